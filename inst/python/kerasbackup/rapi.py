"""Small helpers for the keras3-style R front end: tensors, models, data.

Nothing here touches training state; the R functions for tensors, model
methods and tf.data shims call these where R alone cannot express the Python
(indexing with a tuple key, printing into a string, wrapping R functions).
"""


def shape_list(x):
    """The shape of a tensor or variable as a list, None for unknown."""
    return [None if d is None else int(d) for d in tuple(x.shape)]


def getitem(x, key):
    return x[key]


def summary_text(model, line_length=None, positions=None,
                 expand_nested=False, show_trainable=False, layer_range=None):
    """`model.summary()` as a string (rich's colours and box lines off)."""
    lines = []
    model.summary(
        line_length=line_length,
        positions=positions,
        print_fn=lambda line, line_break=True: lines.append(line),
        expand_nested=expand_nested,
        show_trainable=show_trainable,
        layer_range=layer_range,
    )
    return "\n".join(lines)


def pop_layer(model, rebuild=True):
    """Removes the last layer of a Sequential model."""
    model.pop(rebuild=rebuild)
    return model


def set_custom_objects(objects, clear=True):
    """Replaces (or adds to) Keras' global custom objects; returns the old
    table as a plain dict."""
    import keras

    table = keras.saving.get_custom_objects()
    old = dict(table)
    if clear:
        table.clear()
    table.update(objects or {})
    return old


def _as_tuples(value):
    # An R list comes back as a Python list, which tf.data would stack into
    # one tensor; tfdatasets makes it a tuple, and so do we.
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_tuples(v) for k, v in value.items()}
    return value


def as_map_fn(fn):
    """Wraps an R function for `Dataset.map()`: a tuple element arrives as
    several arguments, and a returned R list becomes a tuple."""
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert
    def map_fn(*args):
        return _as_tuples(fn(*args))

    return map_fn


def as_traced_fn(fn):
    """Wraps an R function for `tf.function()` (AutoGraph has no Python
    source to convert)."""
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert
    def traced_fn(*args, **kwargs):
        return fn(*args, **kwargs)

    return traced_fn
