"""Capture and restore the whole training state.

A state is a pair `(arrays, meta)`: `arrays` maps names to numpy arrays and
`meta` is JSON-serialisable. The store writes both; this module knows what
goes in them. Restores validate everything first, then assign, so a failed
restore leaves the model as it was.
"""

import random

import numpy as np

import keras

# Keras callbacks whose state we save, and the attributes that hold it.
# Anything else opts in with get_state()/set_state().
_CALLBACK_ATTRS = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_weights", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
    "ModelCheckpoint": (
        "best",
        "_last_batch_seen",
        "_batches_seen_since_last_saving",
        "_current_epoch",
    ),
}
# Callbacks that hold no training state of their own.
_STATELESS = ("History", "ProgbarLogger", "BackupAndRestore", "CallbackList")


# ---------------------------------------------------------------- variables


def _variable_groups(model, include_metrics):
    groups = [("model", list(model.variables))]
    opt = getattr(model, "optimizer", None)
    if opt is not None:
        groups.append(("optimizer", list(opt.variables)))
    if include_metrics:
        groups.append(("metrics", list(model.metrics_variables)))
    return groups


def ensure_optimizer_built(model):
    """Builds the optimizer so that its variables can be restored."""
    opt = getattr(model, "optimizer", None)
    if opt is not None and not opt.built:
        opt.build(model.trainable_variables)


def capture_variables(model, include_metrics, into=None):
    """Takes the model's, optimizer's (and metrics') variables to host memory.

    Without `into`, returns read-only views that cost no copy: with
    TensorFlow a variable's read tensor keeps the value it had (an update
    copies the variable's buffer first while the tensor is referenced). That
    is enough for a synchronous save, during which training waits. With
    `into` (the arrays of an earlier capture), each value is copied into
    those reused buffers, for a write in the background.

    Returns `(arrays, index)`; `index` records each variable's path, shape and
    dtype so that a restore can check them before assigning anything.
    """
    arrays, index = {}, {}
    for group, variables in _variable_groups(model, include_metrics):
        entries = []
        for i, v in enumerate(variables):
            name = f"{group}/{i:05d}"
            value = _host_view(v)
            if into is not None:
                buf = into.get(name)
                if buf is None or buf.shape != value.shape or buf.dtype != value.dtype:
                    buf = into[name] = np.empty(value.shape, value.dtype)
                np.copyto(buf, value)
                value = buf
            arrays[name] = value
            entries.append([v.path, list(value.shape), str(value.dtype)])
        index[group] = entries
    return arrays, index


def _host_view(v):
    """The current value of `v` as a host array, without a copy if possible."""
    read = getattr(getattr(v, "value", None), "read_value", None)
    if read is not None:  # a tf.Variable: a zero-copy snapshot on the CPU
        return np.asarray(read())
    # Other backends may update in place: take a private copy.
    return np.array(v.numpy(), copy=True)


def check_variables(model, arrays, index, groups):
    """Returns `[(item, saved, current), ...]` that would stop a restore."""
    problems = []
    current = dict(_variable_groups(model, "metrics" in groups))
    for group in groups:
        saved = index.get(group)
        if saved is None:
            continue
        variables = current.get(group, [])
        if len(saved) != len(variables):
            problems.append((f"{group} variables", len(saved), len(variables)))
            continue
        for i, (v, (path, shape, dtype)) in enumerate(zip(variables, saved)):
            value = arrays.get(f"{group}/{i:05d}")
            if value is None:
                problems.append((f"{group} variable {path}", "saved", "missing"))
            elif tuple(v.shape) != tuple(shape) or tuple(value.shape) != tuple(shape):
                problems.append((f"{group} variable {path} shape",
                                 tuple(shape), tuple(v.shape)))
    return problems


def assign_variables(model, arrays, index, groups):
    """Assigns saved values; call `check_variables()` first."""
    current = dict(_variable_groups(model, "metrics" in groups))
    for group in groups:
        if group not in index:
            continue
        for i, v in enumerate(current.get(group, [])):
            v.assign(arrays[f"{group}/{i:05d}"])


# ---------------------------------------------------------------- random state


def _tf_global_generator():
    try:
        from tensorflow.python.ops import stateful_random_ops
    except Exception:  # other backends, or TF not installed
        return None
    return getattr(stateful_random_ops, "global_generator", None)


def _keras_global_seed_generator():
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute("global_seed_generator")


def capture_rng():
    """Captures the global generators that training may draw from."""
    arrays, meta = {}, {}
    py_state = random.getstate()
    meta["python"] = [py_state[0], list(py_state[1]), py_state[2]]
    name, keys, pos, has_gauss, cached = np.random.get_state()
    arrays["rng/numpy"] = np.array(keys, copy=True)
    meta["numpy"] = [name, int(pos), int(has_gauss), float(cached)]
    gen = _keras_global_seed_generator()
    if gen is not None:
        arrays["rng/keras"] = np.array(gen.state.numpy(), copy=True)
    tf_gen = _tf_global_generator()
    if tf_gen is not None:
        arrays["rng/tf"] = np.array(tf_gen.state.numpy(), copy=True)
    return arrays, meta


def restore_rng(arrays, meta):
    """Restores the generators captured by `capture_rng()`."""
    if "python" in meta:
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in meta and "rng/numpy" in arrays:
        name, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((name, arrays["rng/numpy"], pos, has_gauss, cached))
    if "rng/keras" in arrays:
        from keras.src.random import seed_generator

        seed_generator.global_seed_generator().state.assign(arrays["rng/keras"])
    if "rng/tf" in arrays:
        import tensorflow as tf

        tf_gen = _tf_global_generator() or tf.random.get_global_generator()
        tf_gen.state.assign(arrays["rng/tf"])


# ---------------------------------------------------------------- callbacks


def _json_value(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = np.asarray(value.numpy())
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def callback_state(cb):
    """Returns `(kind, state)` for a callback, or None if it holds none.

    `state` maps attribute names to JSON values or lists of numpy arrays.
    """
    name = type(cb).__name__
    if name in _STATELESS:
        return None
    if callable(getattr(cb, "get_state", None)):
        return "custom", dict(cb.get_state() or {})
    for cls in type(cb).__mro__:
        attrs = _CALLBACK_ATTRS.get(cls.__name__)
        if attrs and cls.__module__.startswith("keras"):
            return "keras", {a: _json_value(getattr(cb, a, None)) for a in attrs}
    return None


def capture_callbacks(callbacks):
    """Captures the state of every stateful callback, keyed by position."""
    arrays, meta = {}, []
    for pos, cb in enumerate(callbacks):
        found = callback_state(cb)
        if found is None:
            continue
        kind, values = found
        plain = {}
        for key, value in values.items():
            if isinstance(value, (list, tuple)) and value and all(
                isinstance(x, np.ndarray) for x in value
            ):
                for i, x in enumerate(value):
                    arrays[f"callback/{pos}/{key}/{i:05d}"] = np.array(x, copy=True)
                plain[key] = {"__arrays__": len(value)}
            elif isinstance(value, np.ndarray):
                arrays[f"callback/{pos}/{key}/array"] = np.array(value, copy=True)
                plain[key] = {"__array__": True}
            else:
                plain[key] = _json_value(value)
        meta.append({"position": pos, "class": type(cb).__name__, "kind": kind,
                     "state": plain})
    return arrays, meta


def restore_callbacks(callbacks, arrays, meta):
    """Restores callback states; returns the class names that had no match."""
    unmatched = []
    for entry in meta:
        pos = entry["position"]
        cb = callbacks[pos] if pos < len(callbacks) else None
        if cb is None or type(cb).__name__ != entry["class"]:
            unmatched.append(entry["class"])
            continue
        values = {}
        for key, value in entry["state"].items():
            if isinstance(value, dict) and "__arrays__" in value:
                values[key] = [
                    arrays[f"callback/{pos}/{key}/{i:05d}"]
                    for i in range(value["__arrays__"])
                ]
            elif isinstance(value, dict) and value.get("__array__"):
                values[key] = arrays[f"callback/{pos}/{key}/array"]
            else:
                values[key] = value
        if entry["kind"] == "custom":
            cb.set_state(values)
        else:
            for key, value in values.items():
                setattr(cb, key, value)
    return unmatched


# ---------------------------------------------------------------- fingerprint


def _describe(obj):
    if obj is None:
        return None
    if isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_describe(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _describe(v) for k, v in obj.items()}
    name = getattr(obj, "__name__", None) or type(obj).__name__
    get_config = getattr(obj, "get_config", None)
    if callable(get_config):
        try:
            config = {k: v for k, v in get_config().items() if k != "name"}
            return {name: _describe(config)}
        except Exception:
            pass
    return name


def fingerprint(model, fit_info=None):
    """Describes what must not change between an interrupted and a resumed run.

    Layer and variable names are left out: Keras numbers them per session
    (`dense`, `dense_1`, ...), and a resumed script may build its model twice.
    A plain float learning rate is left out too: it is state (callbacks such as
    ReduceLROnPlateau change it) and is restored with the optimizer.
    """
    layers = [type(layer).__name__ for layer in model._flatten_layers(include_self=False)]
    items = {
        "layers": " > ".join(layers),
        "weight shapes": " ".join(
            f"{tuple(v.shape)}:{v.dtype}" for v in model.weights
        ),
    }
    opt = getattr(model, "optimizer", None)
    if opt is not None:
        # One item per setting, so a mismatch names just what changed.
        items["optimizer"] = type(opt).__name__
        config = _optimizer_config(opt)
        config.pop("name", None)
        if isinstance(config.get("learning_rate"), (int, float)):
            config.pop("learning_rate")
        for key, value in config.items():
            items[f"optimizer {key}"] = _canonical(_describe(value))
    items["loss"] = _canonical(_describe(getattr(model, "loss", None)))
    compiled = getattr(model, "_compile_config", None)
    metrics = None
    if compiled is not None:
        cfg = compiled.config if hasattr(compiled, "config") else {}
        metrics = [cfg.get("metrics"), cfg.get("weighted_metrics")]
    items["metrics"] = _canonical(_describe(metrics))
    for key, value in (fit_info or {}).items():
        items[key] = value
    return items


def _optimizer_config(opt):
    """The optimizer's config; with a schedule that has no config, a stand-in.

    A learning-rate schedule without `get_config()` (common for schedules
    written in R) makes `opt.get_config()` raise. The schedule is then
    described by its class and plain attributes, and the optimizer's other
    settings are left out of the fingerprint.
    """
    try:
        return dict(opt.get_config())
    except NotImplementedError:
        schedule = getattr(opt, "_learning_rate", None)
        attrs = {k: v for k, v in vars(schedule).items()
                 if not k.startswith("_") and isinstance(v, (str, int, float, bool))}
        return {"learning_rate": {type(schedule).__name__: attrs}}


def _canonical(value):
    import json

    return json.dumps(value, sort_keys=True, default=str)


def compare_fingerprints(old, new, allow_changes=False):
    """Returns `[(item, old, new), ...]` for every item that differs."""
    if allow_changes is True:
        return []
    allowed = set(allow_changes or ())
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in allowed or key not in old or key not in new:
            continue
        if old[key] != new[key]:
            diffs.append((key, old[key], new[key]))
    return diffs


def keras_version():
    return keras.__version__
