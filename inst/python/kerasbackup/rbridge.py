"""Helpers for the R front end: exception classes."""


def exception_classes(exc):
    """R condition classes for a Python exception, as newer reticulate names them."""
    out = []
    for cls in type(exc).__mro__:
        module = "python.builtin" if cls.__module__ == "builtins" else cls.__module__
        out.append(f"{module}.{cls.__name__}")
    return out
