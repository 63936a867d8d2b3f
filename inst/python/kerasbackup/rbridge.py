"""Helpers for the R front end: exception classes and warnings."""

import os
import warnings

from kerasbackup import errors


def exception_classes(exc):
    """R condition classes for a Python exception, as newer reticulate names them."""
    out = []
    for cls in type(exc).__mro__:
        module = "python.builtin" if cls.__module__ == "builtins" else cls.__module__
        out.append(f"{module}.{cls.__name__}")
    return out


def backup_dir_problem(backup_dir):
    """`[message, shown]` if no store can use `backup_dir`, else None.

    `shown` is the value as it may be printed (a URL without credentials).
    """
    from kerasbackup.store import check_backup_dir, display_url, is_url

    try:
        check_backup_dir(backup_dir)
    except ValueError as e:
        try:
            shown = display_url(backup_dir) if is_url(backup_dir) else backup_dir
        except ValueError:  # e.g. a port that is not a number
            shown = "a URL that cannot be parsed"
        return [str(e), shown]
    return None


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
        # R signals every warning() call; appended, so users' filters still win.
        for category in errors.WARNING_CLASSES:
            warnings.filterwarnings("always", category=category, append=True)
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
