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

A backup_dir that is a URL other than file:// (`s3://bucket/prefix`,
`gs://bucket/prefix`, `memory://...`) is kept in an object store instead
(`objstore`): same checkpoint format, same promises, a commit protocol made
for stores that cannot rename, and a lease instead of the flock.
`open_store()` and `backup_info()` pick the back end.

The package, one module per job:

    base       the interface every back end's store offers
    format     names, manifest, array table, the Inspection result (pure)
    verify     inspects a checkpoint's files, picks the newest that verifies
    phases     the phase hook both back ends announce their steps to
    fileio     local file I/O: safe opens, read/write loops, fsync, crc32
    lock       the flock on `.lock`, its holder record, identity re-checks
    publish    staging, atomic publish, trash, clean-up
    directory  backup_dir itself: local path or URL, owner and mode, marker
    local      the local-filesystem back end: CheckpointStore, backup_info
    objclient  object-store clients: conditional writes, parallel parts, retries
    lease      exclusive ownership of an object-store backup_dir
    objfiles   an object-store checkpoint's names, read for verify
    objstore   the object-store back end: ObjectCheckpointStore, backup_info

format and verify are back-end neutral: verify reads through any object
with the interface of fileio.CheckpointFiles (objfiles.ObjectCheckpointFiles
for object stores). The object-store client libraries (s3fs, gcsfs) are
optional and imported only when a URL needs them. POSIX only (needs
`fcntl.flock` and `dir_fd` support).
"""

import os
import re

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
from kerasbackup.store import local, objstore
from kerasbackup.store.directory import is_url, local_path
from kerasbackup.store.local import CheckpointStore, inspect_checkpoint, list_checkpoints
from kerasbackup.store.objclient import check_url, display_url
from kerasbackup.store.objstore import ObjectCheckpointStore
from kerasbackup.store.phases import OBJECT_PHASES, PHASES, set_phase_hook


def _local_only(backup_dir, storage_options):
    if storage_options:
        raise ValueError(
            f"storage_options apply to URLs (s3://, gs://, ...), not to the local "
            f"backup_dir '{backup_dir}'")


def open_store(backup_dir, keep=1, storage_options=None, lease_wait=0.0):
    """The store for `backup_dir`, not yet opened.

    An ObjectCheckpointStore for a URL other than file:// (with
    `storage_options` for fsspec and `lease_wait` for its lease), else a
    local CheckpointStore (`storage_options` must then be empty).
    """
    if is_url(backup_dir):
        return ObjectCheckpointStore(backup_dir, keep=keep,
                                     storage_options=storage_options,
                                     lease_wait=lease_wait)
    _local_only(backup_dir, storage_options)
    return CheckpointStore(backup_dir, keep=keep)


# Called with backup_dir before backup_info() lists it; see add_listing_hook().
_LISTING_HOOKS = []


def add_listing_hook(hook):
    """Has backup_info() call `hook(backup_dir)` before it lists backup_dir.

    The callback uses it to finish what a model.fit() that raised left
    undone in this process (the save that was due), so that what is listed
    is what a resume would find.
    """
    if hook not in _LISTING_HOOKS:
        _LISTING_HOOKS.append(hook)


def backup_info(backup_dir, verify=True, storage_options=None):
    """Lists the checkpoints in `backup_dir` (a path or a URL), oldest first.

    Takes no lock or lease, so it works while another process trains. See
    CheckpointStore.checkpoints() for the dict keys.
    """
    for hook in _LISTING_HOOKS:
        hook(backup_dir)
    if is_url(backup_dir):
        return objstore.backup_info(backup_dir, verify=verify,
                                    storage_options=storage_options)
    _local_only(backup_dir, storage_options)
    return local.backup_info(backup_dir, verify=verify)


def load_published(backup_dir, seq, accept=None, storage_options=None):
    """Loads published checkpoint `seq` without the lock or lease, writing nothing.

    For the workers of a distributed fit() that read what the chief (the one
    writer) published. Verified as by the store's load(); `accept` may reject
    it likewise. Returns `(arrays, meta, info)`.
    """
    if is_url(backup_dir):
        return objstore.load_published(backup_dir, seq, accept=accept,
                                       storage_options=storage_options)
    _local_only(backup_dir, storage_options)
    return local.load_published(backup_dir, seq, accept=accept)


# A scheme of ours without its "//" ("s3:/bucket/run"): a typo, not a path.
_ALMOST_URL = re.compile(r"^(s3a?|gs|gcs|memory|file):(?!//)", re.IGNORECASE)


def check_backup_dir(backup_dir):
    """Raises ValueError for a URL no store can use (scheme, credentials in it, ...).

    Also for a path that starts like one of our URLs but lacks its "//",
    which would otherwise become a local directory of that name. Contacts
    nothing; a local path is checked when the store opens it.
    """
    if is_url(backup_dir):
        check_url(backup_dir)
        return
    m = _ALMOST_URL.match(str(backup_dir))
    if m:
        scheme, rest = m.group(1), str(backup_dir)[m.end():]
        if scheme.lower() == "file":
            hint = "give a plain path, or a file:///absolute/path URL"
        else:
            hint = f"did you mean '{display_url(f'{scheme}://' + rest.lstrip('/'))}'?"
        raise ValueError(
            f"backup_dir starts with '{m.group(0)}' but not '{scheme}://': {hint} "
            "(A local directory must not be named so.)")


def backup_dir_key(backup_dir):
    """One name per backup_dir however it is spelt (never touches a URL as a path)."""
    if is_url(backup_dir):
        return display_url(backup_dir)
    return os.path.realpath(local_path(backup_dir))


__all__ = [
    "ARRAYS_NAME", "CKPT_PREFIX", "FORMAT_VERSION", "LOCK_NAME", "MANIFEST_NAME",
    "MARKER_NAME", "PHASES", "STAGING_PREFIX", "STATE_NAME", "TRASH_PREFIX",
    "BackupDirError", "BackupError", "BackupLockedError", "BackupWriteError",
    "CheckpointFallbackWarning", "CheckpointStore", "CorruptCheckpointError",
    "Inspection", "NoCheckpointError", "OBJECT_PHASES", "ObjectCheckpointStore",
    "SaveCancelled", "StaleLockWarning", "backup_dir_key", "backup_info",
    "check_backup_dir",
    "checkpoint_name", "inspect_checkpoint", "is_url", "list_checkpoints", "load_published",
    "open_store", "parse_checkpoint_name", "set_phase_hook",
]
