"""Crash-safe checkpoint store used by the kerasbackup callback.

A backup directory holds numbered checkpoints. Each checkpoint is written
completely into a private staging directory, flushed to disk and published
with a single atomic rename, so a process killed at any instant leaves
either the old or the new checkpoint, never a half-written one that looks
valid. Every load re-verifies types, sizes, checksums and the array table
before returning data.

On-disk layout of `backup_dir`:

    .kerasbackup            marker: this directory belongs to kerasbackup
    .lock                   flock()ed by the writer; holds {pid, host, started}
    ckpt-0000000007/        one published checkpoint (seq = 7; at least 10
                            digits, more once seq reaches 10**10)
        arrays.bin          all arrays' raw bytes, back to back, C order
        state.json          {"arrays": [{name, dtype, shape, offset, nbytes}],
                             "meta": <the caller's JSON meta>}
        manifest.json       written last: format_version, seq, created (UTC),
                            epoch, batch, size and crc32 of the two files
                            above, and a crc32 of the manifest itself
    .staging-<pid>-<hex>/   checkpoint being written (removed by open())
    .trash-<pid>-<hex>-...  old checkpoint being deleted (removed by open())

`load()` returns None when there is no checkpoint yet (a fresh start) and
`load(required=True)` raises NoCheckpointError instead; a directory whose
checkpoints all fail verification always raises CorruptCheckpointError.

The package, one module per job:

    format     names, manifest, array table, the Inspection result (pure)
    verify     inspects a checkpoint's files, picks the newest that verifies
    fileio     local file I/O: safe opens, read/write loops, fsync, crc32
    lock       the flock on `.lock`, its holder record, identity re-checks
    publish    staging, atomic publish, trash, clean-up, the phase hook
    directory  backup_dir itself: local path, owner and mode, marker
    local      the local-filesystem back end: CheckpointStore, backup_info

format and verify are back-end neutral (verify reads through any object
with the interface of fileio.CheckpointFiles); an object-storage back end
would add its own lock, publish and reader next to `local`. Only the standard
library and numpy are imported, so helper processes start quickly. POSIX
only (needs `fcntl.flock` and `dir_fd` support).
"""

from kerasbackup.errors import (
    BackupDirError,
    BackupError,
    BackupLockedError,
    BackupWriteError,
    CheckpointFallbackWarning,
    CorruptCheckpointError,
    NoCheckpointError,
    SaveCancelled,
    StaleLockWarning,
)
from kerasbackup.store.format import (
    ARRAYS_NAME,
    CKPT_PREFIX,
    FORMAT_VERSION,
    LOCK_NAME,
    MANIFEST_NAME,
    MARKER_NAME,
    STAGING_PREFIX,
    STATE_NAME,
    TRASH_PREFIX,
    Inspection,
    checkpoint_name,
    parse_checkpoint_name,
)
from kerasbackup.store.local import (
    CheckpointStore,
    backup_info,
    inspect_checkpoint,
    list_checkpoints,
    load_published,
)
from kerasbackup.store.publish import PHASES, set_phase_hook

__all__ = [
    "ARRAYS_NAME", "CKPT_PREFIX", "FORMAT_VERSION", "LOCK_NAME", "MANIFEST_NAME",
    "MARKER_NAME", "PHASES", "STAGING_PREFIX", "STATE_NAME", "TRASH_PREFIX",
    "BackupDirError", "BackupError", "BackupLockedError", "BackupWriteError",
    "CheckpointFallbackWarning", "CheckpointStore", "CorruptCheckpointError",
    "Inspection", "NoCheckpointError", "SaveCancelled", "StaleLockWarning",
    "backup_info", "checkpoint_name", "inspect_checkpoint", "list_checkpoints",
    "load_published", "parse_checkpoint_name", "set_phase_hook",
]
