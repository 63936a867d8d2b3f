"""The local-filesystem back end: CheckpointStore and backup_info().

Puts the parts together for a backup_dir on a POSIX file system: checks the
directory (see `directory`), takes the lock, writes through the atomic
publish, prunes, loads with fallback, deletes only what it wrote.
"""

import errno
import os
import stat
import threading
import weakref

from kerasbackup import errors
from kerasbackup.errors import (
    BackupDirError, BackupLockedError, BackupWriteError, NoCheckpointError, SaveCancelled)
from kerasbackup.store import publish as pub
from kerasbackup.store.base import Store
from kerasbackup.store.directory import (
    adopt, local_path, open_backup_dir, protected, sync_marker,
)
from kerasbackup.store.fileio import CheckpointFiles, DirHandle, HeldFiles, os_error_text
from kerasbackup.store.format import (
    MARKER_NAME, Inspection, checkpoint_name, parse_checkpoint_name, prepare_save,
    write_failure_text)
from kerasbackup.store.lock import DirLock
from kerasbackup.store.phases import phase
from kerasbackup.store.verify import LOAD, STRUCTURE, VERIFY, inspect, load_newest

# Stores holding a lock in this process. A child forked without exec (e.g. a
# multiprocessing data loader worker) shares the lock's open file, which
# would keep backup_dir locked after this process dies and let the child's
# close() wipe the holder record; the child therefore drops its copies.
_OPEN_STORES = weakref.WeakSet()


def _forget_locks_after_fork():
    for st in list(_OPEN_STORES):
        st._after_fork_in_child()
    _OPEN_STORES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_after_fork)


class CheckpointStore(Store):
    """Exclusive, crash-safe reader/writer of one local backup directory.

    Usage::

        with CheckpointStore(backup_dir, keep=2) as store:
            loaded = store.load()            # None if nothing saved yet
            ...
            store.save(arrays, meta, epoch=3, batch=0)

    `keep` is how many published checkpoints to retain (1, or 2 for
    double checkpointing). `save()` and `load()` open the store on first
    use. All methods are thread-safe; `save()` may run on a background
    thread.
    """

    def __init__(self, backup_dir, keep=1):
        if int(keep) < 1:
            raise ValueError(f"keep must be >= 1, got {keep!r}")
        self.backup_dir = local_path(backup_dir)
        self.keep = int(keep)
        self._mutex = threading.RLock()
        self._dir = None      # DirHandle while open
        self._lock = None     # DirLock while open
        self._lost = None     # BackupLockedError once the lock was lost
        self._last_seq = 0
        self._remover = None  # background deletion of pruned checkpoints
        self._marker_unsynced = False  # until the first save after open() syncs it

    # ------------------------------------------------------------ open/close

    @property
    def is_open(self):
        """Whether this object currently holds backup_dir's lock."""
        return self._lock is not None

    def open(self):
        """Checks backup_dir, takes its lock and removes leftovers of killed writers.

        Creates backup_dir (and parents) if missing. Raises BackupDirError if
        it is not a directory, cannot be created, is owned by another user or
        writable by others without the sticky bit, or is a non-empty
        directory without the `.kerasbackup` marker; BackupLockedError if
        another live process or store object holds the lock. Warns
        StaleLockWarning when taking over the lock of a dead process on this
        host. Idempotent. Returns self.
        """
        with self._mutex:
            if self._lost is not None:
                raise self._lost
            if self._lock is not None:
                return self
            directory = open_backup_dir(self.backup_dir)
            lock = DirLock(directory)
            try:
                adopt(directory)
                lock.acquire()
                pub.remove_leftovers(directory)
            except BaseException as e:
                lock.release()
                directory.close()
                if isinstance(e, OSError):
                    raise BackupDirError(f"cannot use backup_dir '{self.backup_dir}': "
                                         f"{os_error_text(e)}", self.backup_dir, e) from e
                raise
            self._dir, self._lock = directory, lock
            # Also a marker found here: its writer may have been killed
            # before it synced it (cheap when it is already on disk).
            self._marker_unsynced = True
            _OPEN_STORES.add(self)
            return self

    def close(self):
        """Releases the lock (idempotent). The checkpoints stay on disk.

        Waits for the deletion of pruned checkpoints to finish first. After
        a lost lock (BackupLockedError), makes the store usable again.
        """
        with self._mutex:
            self._wait_for_removal()
            self._release(clear=self._lost is None)
            self._lost = None

    def _release(self, clear=True):
        lock, directory, self._lock, self._dir = self._lock, self._dir, None, None
        _OPEN_STORES.discard(self)
        if lock is not None:
            lock.release(clear=clear)
        if directory is not None:
            directory.close()

    def _after_fork_in_child(self):
        # The parent's lock is unaffected by closing our copies.
        self._mutex = threading.RLock()  # may have been held by another thread
        self._remover = None
        for h in (self._lock, self._dir):
            if h is not None and h.fd is not None:
                try:
                    os.close(h.fd)
                except OSError:
                    pass
                h.fd = None
        self._lock = self._dir = None

    def _ensure_open(self):
        if self._lost is not None:
            raise self._lost
        if self._lock is None:
            self.open()

    def _check_lock(self):
        """Raises BackupLockedError (and keeps raising it) if the lock was lost."""
        try:
            self._lock.check()
        except BackupLockedError as e:
            self._lost = e
            raise

    # ------------------------------------------------------------------ save

    def save(self, arrays, meta, epoch, batch, cancel=None, checksums=None):
        """Writes and atomically publishes a new checkpoint; returns its info dict.

        `arrays` maps names to numpy arrays (any shape, fixed-size dtype),
        `meta` must be JSON-serialisable (numpy scalars are converted).
        Arrays are written straight from their memory and must not change
        until save() returns. `checksums` (name -> crc32 of an array's
        bytes, taken as they were copied, see saver.HostBuffers.fill())
        spares reading those arrays again for the data file's crc32. On
        any OSError raises BackupWriteError naming backup_dir and the
        error; the staging directory is removed and the previous
        checkpoints are untouched. Older checkpoints beyond `keep`
        are removed only after the new one is durable. If `cancel` (a
        threading.Event) is set before the publishing rename, raises
        SaveCancelled and leaves the directory as it was. If the lock was
        lost (backup_dir or `.lock` replaced), raises BackupLockedError
        without publishing.
        """
        # Everything that can fail on bad input fails before touching disk.
        buffers, total, crc, state_bytes, epoch, batch = prepare_save(
            arrays, meta, epoch, batch, checksums)

        with self._mutex:
            self._ensure_open()
            directory, d = self._dir, self.backup_dir
            staged = None
            try:
                if self._marker_unsynced:
                    # Before anything else is made durable here: a directory
                    # that keeps a staging dir, or a checkpoint, keeps its marker.
                    sync_marker(directory)
                    directory.sync()
                    self._marker_unsynced = False
                seq = pub.next_seq(directory, self._last_seq)
                staged = pub.write_staging(directory, buffers, total, state_bytes,
                                           seq, epoch, batch, crc)
                if cancel is not None and cancel.is_set():
                    # The caller gave up (e.g. a second preemption signal):
                    # the previous checkpoint stays the newest.
                    raise SaveCancelled(f"save to '{d}' was cancelled")
                final = pub.publish(directory, staged, self._check_lock)
            except OSError as e:
                if staged is not None:
                    pub.remove_quietly(directory, staged.name)
                if isinstance(e, FileNotFoundError):
                    # backup_dir or .lock removed or replaced: say so, not
                    # the OS error it led to (the lock's own check may fail
                    # as the write did: then the write error stands).
                    try:
                        self._check_lock()
                    except OSError:
                        pass
                raise BackupWriteError(
                    write_failure_text(d, epoch, batch, os_error_text(e)), d, e) from e
            except BaseException:
                if staged is not None:
                    pub.remove_quietly(directory, staged.name)
                raise
            self._last_seq = seq
            path = directory.join(final)
            try:
                directory.sync()
            except OSError as e:
                # Published but maybe not durable: keep the older ones.
                raise BackupWriteError(
                    f"checkpoint {path} was published in backup_dir '{d}' "
                    f"but syncing the directory failed: {os_error_text(e)}. "
                    "Older checkpoints were kept.", d, e) from e
            phase("published", backup_dir=d, path=path)
            self._prune()
            phase("pruned", backup_dir=d, path=path)
            return Inspection(path=path, seq=seq, epoch=epoch, batch=batch,
                              created=staged.created, size_bytes=staged.size_bytes,
                              verified=True).info()

    def _prune(self):
        """Removes published checkpoints beyond `keep`, oldest first, best effort.

        They are renamed to .trash-* names at once, so no reader sees them
        after save() returns. Syncing that rename and the deletion (about a
        quarter of a save for big files) run on a background thread that the
        next prune, close() and delete() wait for. Trash left by a killed
        process is removed at the next open().
        """
        directory = self._dir
        self._wait_for_removal()
        self._check_lock()
        try:
            old = [name for _, name in pub.checkpoint_dirs(directory)[: -self.keep]]
            trash, failed = pub.trash(
                directory, [n for n in old if pub.holds_only_ours(directory, n)])
        except OSError as e:
            trash, failed = [], [(None, e)]
        for name, e in failed:
            # The new checkpoint is safe; leftovers go at the next save/open().
            what = "an old checkpoint" if name is None else f"old checkpoint {name}"
            errors.warn(
                f"backup_dir '{self.backup_dir}': could not remove {what}: "
                f"{os_error_text(e)}", RuntimeWarning, stacklevel=3)
        if trash:
            self._remover = threading.Thread(
                target=pub.sync_and_remove, args=(directory, trash),
                name="kerasbackup-prune", daemon=True)
            self._remover.start()

    def _wait_for_removal(self):
        remover, self._remover = self._remover, None
        if remover is not None:
            remover.join()

    # ------------------------------------------------------------------ load

    def load(self, required=False, accept=None):
        """Returns `(arrays, meta, info)` of the newest checkpoint that verifies.

        Every file's type, size and crc32 and the array table are checked
        before anything is returned. `accept(arrays, meta, info)`, if given,
        is called for each checkpoint that verified, newest first; it returns
        None to take it, or a list of problems `{file, kind, detail}` to
        reject it, which then count as a failed verification (e.g. arrays
        that do not fit the model). If the newest checkpoint fails and an
        older one verifies, that one is returned with a
        CheckpointFallbackWarning saying which checkpoint failed and why. If
        checkpoints exist but none verifies, raises CorruptCheckpointError
        (files are left in place). With no checkpoint at all returns None,
        or raises NoCheckpointError if `required`.
        """
        with self._mutex:
            self._ensure_open()
            directory = self._dir
            newest_first = reversed(pub.checkpoint_dirs(directory))
            inspections = (_inspect(directory, seq, name, LOAD)
                           for seq, name in newest_first)
            return load_newest((i for i in inspections if i is not None),
                               self.backup_dir, required, accept)

    # ------------------------------------------------------------ inspection

    def checkpoints(self, verify=True):
        """Lists the checkpoints, oldest first, as info dicts.

        Each dict has path, seq, epoch, batch, created, size_bytes, verified
        and problem. Needs no lock, so it also works while another process
        writes. With `verify=False` checksums are skipped: `verified` is then
        None for checkpoints whose manifest and sizes are fine.
        """
        return backup_info(self.backup_dir, verify=verify)

    # ---------------------------------------------------------------- delete

    def delete(self):
        """Removes everything the store wrote, then backup_dir if it is empty.

        Deletes the checkpoints, staging and trash directories (only the
        files the store writes in them, as regular files, never through a
        symlink; a checkpoint directory holding anything else stays whole),
        the lock file and the marker; whatever else is in backup_dir stays,
        and then so does the directory. backup_dir itself
        is never removed if it is the root, $HOME, or the working directory
        or one of its ancestors. Takes the lock first, so it refuses a
        directory in use, not created by kerasbackup, or whose lock was lost.
        The store is closed afterwards. A missing backup_dir is a no-op, also
        when it was removed while the store was open. The space of big files
        is given back on a thread of its own, soon after this returns
        (phase "freed").
        """
        with self._mutex:
            d = self.backup_dir
            if self._lost is not None:
                raise self._lost
            if not os.path.lexists(d):
                self._release(clear=False)  # removed behind our back: nothing left
                return
            self.open()
            self._wait_for_removal()
            self._check_lock()
            directory, lock = self._dir, self._lock
            held = HeldFiles()
            done = False
            try:
                self._delete_files(directory, lock, held)
                if protected(directory) is None and not directory.moved():
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass  # not empty: the user's own files stay
                self._release()
                phase("deleted", backup_dir=d, path=d)
                done = True
            finally:
                # Also when it failed or was interrupted (Ctrl-C): the lock
                # goes, and the held files are never kept.
                if not done:
                    self._release()
                _free(held, d, background=len(held) > 0 or not done)

    def _delete_files(self, directory, lock, held):
        d = self.backup_dir
        try:
            phase("deleting", backup_dir=d, path=d)
            ours = [n for _, n in pub.checkpoint_dirs(directory)
                    if pub.holds_only_ours(directory, n)]
            trash, failed = pub.trash(directory, ours)
            if trash:
                directory.sync()
            for name in trash:
                pub.remove_own_dir(directory, name, held)
            if failed:
                raise failed[0][1]  # after the others are gone
            pub.remove_leftovers(directory)
            # The lock before the marker: a directory that holds only a
            # `.lock` is never taken for ours. Marker last: an
            # interrupted delete stays recognisable.
            lock.unlink()
            self._lock = None
            _OPEN_STORES.discard(self)
            lock.release(clear=False)
            if stat.S_ISREG(directory.lstat(MARKER_NAME).st_mode):
                os.unlink(MARKER_NAME, dir_fd=directory.fd)
        except FileNotFoundError as e:
            if e.filename != MARKER_NAME:
                self._delete_failed(e)
        except OSError as e:
            self._delete_failed(e)

    def _delete_failed(self, e):
        self._release()
        d = self.backup_dir
        raise BackupWriteError(
            f"could not delete backup_dir '{d}': {os_error_text(e)}", d, e) from e


def _free(held, backup_dir, background):
    """Closes `held`, then announces "freed"; on a thread of its own if `background`.

    Freeing the blocks of the last checkpoint is most of a delete's time (the
    end of every fit() with delete_checkpoint); nothing waits for it, and at
    exit the kernel finishes it.
    """
    def run():
        held.close()
        phase("freed", backup_dir=backup_dir, path=backup_dir)

    if background:
        try:
            threading.Thread(target=run, name="kerasbackup-free", daemon=True).start()
            return
        except RuntimeError:
            pass  # no thread to be had: free them here
    run()


def _inspect(directory, seq, name, mode):
    """Inspects checkpoint `name` in `directory`; None if it vanished."""
    try:
        files = CheckpointFiles(directory, name)
    except FileNotFoundError:
        return None
    except OSError as e:
        ins = Inspection(path=directory.join(name), seq=seq)
        return ins.fail(".", "unreadable", os_error_text(e))
    with files:
        ins = inspect(files, seq, mode)
    if ins.problems:
        try:
            directory.lstat(name)
        except FileNotFoundError:
            return None  # pruned by the writer while we looked at it
    return ins


def load_published(backup_dir, seq, accept=None):
    """Loads published checkpoint `seq` without taking the lock or writing anything.

    For the workers of a distributed fit() that read what the chief (the one
    writer, holding the lock) published. The checkpoint is verified as by
    `CheckpointStore.load()`, and `accept` may reject it likewise. Returns
    `(arrays, meta, info)`; raises NoCheckpointError if backup_dir or the
    checkpoint does not exist here, CorruptCheckpointError if it fails
    verification or `accept`.
    """
    d = local_path(backup_dir)
    name = checkpoint_name(int(seq))
    try:
        directory = DirHandle.open(d)
    except FileNotFoundError:
        directory = None
    except OSError as e:
        raise BackupDirError(
            f"cannot read backup_dir '{d}': {os_error_text(e)}", d, e) from e
    if directory is None:
        raise NoCheckpointError(f"backup_dir '{d}' does not exist here", d)
    with directory:
        ins = _inspect(directory, int(seq), name, LOAD)
    if ins is None:
        raise NoCheckpointError(
            f"backup_dir '{d}' holds no checkpoint {name}", d)
    return load_newest([ins], d, required=True, accept=accept)


def list_checkpoints(backup_dir):
    """[(seq, path)] of the published checkpoints in `backup_dir`, oldest first."""
    d = local_path(backup_dir)
    with DirHandle.open(d) as directory:
        return [(seq, directory.join(name)) for seq, name in pub.checkpoint_dirs(directory)]


def inspect_checkpoint(path, mode=VERIFY):
    """Inspects one checkpoint directory; returns an Inspection.

    `mode` is "structure", "verify" or "load" (see verify.inspect). For the
    benchmark and tests; the store itself goes through load() and
    backup_info().
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    with DirHandle.open(parent) as directory:
        ins = _inspect(directory, parse_checkpoint_name(name), name, mode)
    if ins is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    return ins


def backup_info(backup_dir, verify=True):
    """Lists the checkpoints in `backup_dir`, oldest first, without locking.

    Safe to call while another process holds the lock and writes; a
    checkpoint removed during the scan is simply left out. Returns [] if
    backup_dir does not exist. See CheckpointStore.checkpoints() for the
    dict keys.
    """
    d = local_path(backup_dir)
    try:
        directory = DirHandle.open(d)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise BackupDirError(
            f"cannot read backup_dir '{d}': {os_error_text(e)}", d, e) from e
    mode = VERIFY if verify else STRUCTURE
    with directory:
        try:
            found = pub.checkpoint_dirs(directory)
        except OSError as e:
            raise BackupDirError(
                f"cannot read backup_dir '{d}': {os_error_text(e)}", d, e) from e
        infos = (_inspect(directory, seq, name, mode) for seq, name in found)
        return [ins.info() for ins in infos if ins is not None]
