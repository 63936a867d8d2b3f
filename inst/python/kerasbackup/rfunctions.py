"""R functions as Python callables that carry a real signature.

Keras inspects some callables (Lambda layers look for `mask` and `training`,
learning-rate schedules and metrics are called by keyword), while an R
function handed over by reticulate only shows `(*args, **kwargs)`. The
wrapper forwards exactly the arguments it is given, so the R function's own
defaults still apply.
"""

import inspect

_KIND = inspect.Parameter.POSITIONAL_OR_KEYWORD


def signature_of(arg_names, has_dots):
    """An `inspect.Signature` for R formals, or None if a name is not valid Python."""
    names = [str(name) for name in arg_names]
    if not all(name.isidentifier() for name in names):
        return None
    params = [inspect.Parameter(name, _KIND) for name in names]
    if has_dots:
        params.append(inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL))
        params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def as_callable(fn, arg_names=(), has_dots=True, name="r_function"):
    """Wraps `fn` (a callable made from an R function) with the given signature."""

    def call(*args, **kwargs):
        return fn(*args, **kwargs)

    sig = signature_of(list(arg_names), bool(has_dots))
    if sig is not None:
        call.__signature__ = sig
    call.__name__ = call.__qualname__ = str(name)
    return call


def one_based_index(fn):
    """A callback hook `(index, logs)` that hands R a 1-based index."""

    def hook(index, logs=None):
        return fn(int(index) + 1, logs)

    return hook
