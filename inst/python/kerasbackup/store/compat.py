"""What the object-store back end takes from the local store, in one place.

The local store is being split into `kerasbackup.store` (format, I/O, lock,
publish, verification) with the errors in `kerasbackup.errors`. Until that
lands this module takes the same names from the single `store.py`; after the
merge its body becomes plain imports from the new modules (errors from
`kerasbackup.errors`, the format helpers from the format module, the phase
hook from the publish module) and nothing else changes.
"""

import os
import tempfile

try:
    from kerasbackup.errors import (  # the split layout
        BackupDirError, BackupError, BackupLockedError, BackupWriteError,
        CheckpointFallbackWarning, CorruptCheckpointError, NoCheckpointError,
        SaveCancelled, StaleLockWarning)
except ImportError:  # the single store.py of today
    from kerasbackup.store import (  # noqa: F401
        BackupDirError, BackupError, BackupLockedError, BackupWriteError,
        CheckpointFallbackWarning, CorruptCheckpointError, NoCheckpointError,
        SaveCancelled, StaleLockWarning)

# TEMPORARY until the format module lands: today these are store.py's private
# helpers; the format is the local store's, so it must not be written twice.
from kerasbackup import store as _local

FORMAT_VERSION = _local.FORMAT_VERSION
MANIFEST_FORMAT = _local._MANIFEST_FORMAT
MANIFEST_NAME = _local.MANIFEST_NAME
ARRAYS_NAME = _local.ARRAYS_NAME
STATE_NAME = _local.STATE_NAME

manifest_crc = _local._manifest_crc          # crc32 of a manifest body
prepare_arrays = _local._prepare_arrays      # -> (table entries, buffers, total)
parse_state = _local._parse_state            # checks a state.json's array table
json_default = _local._json_default          # numpy scalars in meta
format_problem = _local._format_problem      # "file: kind (detail)"
utc_now = _local._utc_now                    # ISO 8601 UTC with microseconds
pid_alive = _local._pid_alive                # is a process on this host alive
set_phase_hook = _local.set_phase_hook       # one hook for both back ends
phase = _local._phase


def parse_manifest(raw):
    """Checks a manifest's bytes as the local store does; returns (manifest, problem).

    `problem` is None or `(kind, detail)`. The local checker reads a file, so
    the (small) manifest goes through a private temporary directory; the
    format module's bytes-level parser replaces this after the merge.
    """
    with tempfile.TemporaryDirectory(prefix="kerasbackup-manifest-") as d:
        with open(os.path.join(d, MANIFEST_NAME), "wb") as f:
            f.write(raw)
        return _local._read_manifest(d)
