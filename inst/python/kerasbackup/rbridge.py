"""Helpers for the R front end: R-defined callbacks, exception classes, warnings."""

import os
import warnings

import keras

from kerasbackup.state import log_values

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
    return log_values(logs)


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


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _is_ours(record):
    category = record.category
    return (category.__module__.split(".")[0] == "kerasbackup"
            or os.path.abspath(record.filename).startswith(_PACKAGE_DIR + os.sep))


class WarningCapture:
    """Collects the warnings raised during one call from R.

    The package's own warnings are handed to R (`finish()`), which signals
    them as R warnings; any other warning is shown as Python would have
    shown it. Python's warning filters apply as usual.
    """

    def __init__(self):
        self._context = None
        self._records = []

    def start(self):
        self._context = warnings.catch_warnings(record=True)
        self._records = self._context.__enter__()
        return self

    def finish(self):
        """Stops collecting; returns `[(classes, message), ...]` for R.

        `classes` are the names along the warning category's class
        hierarchy (e.g. `["CheckpointFallbackWarning", "UserWarning",
        "Warning", ...]`). Idempotent.
        """
        context, self._context = self._context, None
        if context is None:
            return []
        context.__exit__(None, None, None)
        ours = []
        for record in self._records:
            if _is_ours(record):
                ours.append(([c.__name__ for c in record.category.__mro__],
                             str(record.message)))
            else:
                warnings.showwarning(record.message, record.category,
                                     record.filename, record.lineno)
        self._records = []
        return ours
