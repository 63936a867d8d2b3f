"""Imports the object-store back end whether or not `kerasbackup.store` is a package yet.

While the local store is still the single module store.py, the modules in
inst/python/kerasbackup/store/ are loaded as the package
`kerasbackup_store_objects` (their relative imports resolve inside it);
once store/ is a package they are imported from `kerasbackup.store`.
"""

import importlib
import os
import sys
import types

INST_PYTHON = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "inst", "python"))
if INST_PYTHON not in sys.path:
    sys.path.insert(0, INST_PYTHON)


def _package():
    import kerasbackup.store as store
    if hasattr(store, "__path__"):
        return "kerasbackup.store"
    name = "kerasbackup_store_objects"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(INST_PYTHON, "kerasbackup", "store")]
        sys.modules[name] = pkg
    return name


PACKAGE = _package()
compat = importlib.import_module(PACKAGE + ".compat")
objclient = importlib.import_module(PACKAGE + ".objclient")
lease = importlib.import_module(PACKAGE + ".lease")
objstore = importlib.import_module(PACKAGE + ".objstore")
