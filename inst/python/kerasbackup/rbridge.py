"""Helpers for the R front end: R-defined callbacks and exception classes."""

import keras

from kerasbackup.callback import _to_float

# Methods whose first argument is an epoch or batch index; R sees it 1-based.
_INDEXED = {
    "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end",
    "on_test_batch_begin", "on_test_batch_end",
    "on_predict_batch_begin", "on_predict_batch_end",
}
_LOGS_ONLY = {
    "on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
    "on_predict_begin", "on_predict_end",
}


def _plain_logs(logs):
    return {key: _to_float(value) for key, value in (logs or {}).items()}


def _method(name, fn):
    def method(self, *args, **kwargs):
        args = list(args)
        if name in _INDEXED or name in _LOGS_ONLY:
            if name in _INDEXED:
                index = args.pop(0) if args else kwargs.pop("epoch", kwargs.pop("batch", 0))
                logs = args.pop(0) if args else kwargs.pop("logs", None)
                result = fn(self, int(index) + 1, _plain_logs(logs))
            else:
                logs = args.pop(0) if args else kwargs.pop("logs", None)
                result = fn(self, _plain_logs(logs))
            if isinstance(result, dict) and logs is not None:
                logs.update(result)
            return None
        return fn(self, *args, **kwargs)

    method.__name__ = name
    return method


def new_callback_class(classname, methods, fields=None):
    """Makes a `keras.callbacks.Callback` subclass from R functions.

    Each R function is called as `fn(self, index + 1, logs)` for epoch and
    batch hooks and `fn(self, logs)` for the others; a dict it returns is
    merged into `logs`.
    """
    attrs = dict(fields or {})
    for name, fn in methods.items():
        attrs[name] = _method(name, fn)
    return type(str(classname), (keras.callbacks.Callback,), attrs)


def exception_classes(exc):
    """R condition classes for a Python exception, as newer reticulate names them."""
    out = []
    for cls in type(exc).__mro__:
        module = "python.builtin" if cls.__module__ == "builtins" else cls.__module__
        out.append(f"{module}.{cls.__name__}")
    return out
