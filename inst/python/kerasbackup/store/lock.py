"""The lock that makes one store the only writer of a local backup_dir.

`.lock` is flock()ed and holds a JSON record {pid, host, started} of its
holder. It is opened without following symlinks and must be a regular file
of ours with one link, so a planted `.lock -> /victim` (or a hard link to
a victim) is refused and the victim never written. A lock left by a dead
process on this host is taken over with a StaleLockWarning.

An flock guards an inode, not a name: if `.lock` or backup_dir is removed
and recreated, another process can lock the new file while we still hold
the old one. `check()` re-reads what the names point to (device and inode)
and raises BackupLockedError if they no longer are what we locked; the store
calls it before each publish, prune and delete.
"""

import contextlib
import errno
import json
import os
import socket
import stat
import time

from kerasbackup import errors
from kerasbackup.errors import BackupDirError, BackupLockedError, StaleLockWarning
from kerasbackup.store.fileio import (
    FILE_MODE, READ_FLAGS, describe_mode, ident, os_error_text)
from kerasbackup.store.format import LOCK_NAME, utc_now

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_LOCK_FLAGS = (os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))


def pid_alive(pid):
    """Returns whether process `pid` on this host is still running."""
    if pid <= 0:  # kill(0) or kill(-n) would probe process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists, owned by someone else
        return True
    # A killed but unreaped child still answers kill(0); it is dead for us.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _dead_here(holder):
    pid = holder.get("pid")
    return (isinstance(pid, int) and pid != os.getpid()
            and holder.get("host") == socket.gethostname() and not pid_alive(pid))


def read_holder(fd, wait=False):
    """Reads the holder record from an open lock file; {} if unreadable."""
    # The holder writes its record just after locking; give it a moment.
    for attempt in range(20 if wait else 1):
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
            if isinstance(holder, dict):
                return holder
        except (OSError, ValueError):
            pass
        if wait:
            time.sleep(0.01)
    return {}


class DirLock:
    """The flock on `<directory>/.lock`, for a DirHandle `directory`."""

    def __init__(self, directory):
        self.dir = directory
        self.fd = None
        self.ident = None

    @property
    def held(self):
        return self.fd is not None

    def acquire(self):
        """Takes the lock and records us as its holder.

        Raises BackupLockedError if a live process or another store in this
        process holds it, BackupDirError if `.lock` is not a regular file of
        ours or an OS call fails. Warns StaleLockWarning on a takeover.
        """
        if fcntl is None:  # pragma: no cover
            raise BackupDirError(
                f"backup_dir '{self.dir.path}': file locking (fcntl) is not "
                "available on this platform", self.dir.path)
        fd = self._take()
        with self._closing_on_error(fd):
            previous = read_holder(fd)
            if _dead_here(previous):
                errors.warn(
                    f"backup_dir '{self.dir.path}': taking over the lock of "
                    f"process {previous['pid']} on host {previous['host']} "
                    f"(started {previous.get('started')}), which is no longer "
                    "running; it was probably killed.", StaleLockWarning, stacklevel=3)
            data = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "started": utc_now()}).encode()
            # Overwrite in place, then cut: a reader never sees an empty file
            # unless the old record was empty too.
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        self.fd, self.ident = fd, ident(os.fstat(fd))

    def _take(self):
        """Opens and flocks `.lock`; returns the fd once the name still is it."""
        for attempt in range(100):
            fd = self._open()
            with self._closing_on_error(fd):
                try:
                    self._flock(fd)
                except BlockingIOError:
                    raise self._locked_error(read_holder(fd, wait=True)) from None
                # The name may have been unlinked or replaced between our
                # open and our flock: then the lock we got guards nothing.
                st = self._lstat_name()
                if st is not None and ident(st) == ident(os.fstat(fd)):
                    return fd
            os.close(fd)
        raise BackupLockedError(
            f"backup_dir '{self.dir.path}': its lock file keeps being replaced "
            "while we try to lock it; another process is interfering.", self.dir.path)

    @contextlib.contextmanager
    def _closing_on_error(self, fd):
        try:
            yield
        except OSError as e:
            os.close(fd)
            raise BackupDirError(f"cannot lock backup_dir '{self.dir.path}': "
                                 f"{os_error_text(e)}", self.dir.path, e) from e
        except BaseException:
            os.close(fd)
            raise

    def _open(self):
        d = self.dir.path
        try:
            fd = os.open(LOCK_NAME, _LOCK_FLAGS, FILE_MODE, dir_fd=self.dir.fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EMLINK):
                try:
                    target = os.readlink(LOCK_NAME, dir_fd=self.dir.fd)
                except OSError:
                    target = "?"
                raise BackupDirError(
                    f"backup_dir '{d}': its lock file '{LOCK_NAME}' is a symbolic "
                    f"link (to '{target}'). kerasbackup never follows links in "
                    "backup_dir; remove it, or choose another directory.", d, e) from None
            raise BackupDirError(
                f"cannot open lock file of backup_dir '{d}': {os_error_text(e)}",
                d, e) from e
        try:
            st = os.fstat(fd)
            why = None
            if not stat.S_ISREG(st.st_mode):
                why = f"is {describe_mode(st.st_mode)}, not a regular file"
            elif st.st_uid != os.geteuid():
                why = f"is owned by uid {st.st_uid}, not by this process's uid {os.geteuid()}"
            elif st.st_nlink != 1:
                why = f"has {st.st_nlink} hard links (another name for the same file)"
            if why:
                raise BackupDirError(
                    f"backup_dir '{d}': its lock file '{LOCK_NAME}' {why}. "
                    "Refusing to write to it: remove it, or choose another "
                    "directory.", d)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _lstat_name(self):
        try:
            return self.dir.lstat(LOCK_NAME)
        except FileNotFoundError:
            return None

    @staticmethod
    def _flock(fd):
        """Takes the lock without blocking on a live holder (BlockingIOError)."""
        for attempt in range(100):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                # A killed multi-threaded process looks dead (zombie leader)
                # a few ms before its last thread closes the lock file; only
                # then wait, a live holder is reported at once.
                if not _dead_here(read_holder(fd)) or attempt == 99:
                    raise
            time.sleep(0.02)

    def _locked_error(self, holder):
        d = self.dir.path
        pid, host = holder.get("pid"), holder.get("host")
        here = host == socket.gethostname()
        who = ("another CheckpointStore in this process"
               if here and pid == os.getpid() else "another process")
        note = ""
        if here and isinstance(pid, int) and pid != os.getpid() and not pid_alive(pid):
            note = (" That process is no longer running, but the lock file is "
                    "still held open, probably by a process it started.")
        return BackupLockedError(
            f"backup_dir '{d}' is in use by {who}: pid {pid} on host {host}, "
            f"started {holder.get('started')}.{note} Only one training run may "
            "use a backup_dir at a time; stop the other one or choose another "
            "backup_dir.", d, holder)

    def check(self):
        """Raises BackupLockedError unless backup_dir and `.lock` are still ours.

        That is, the path backup_dir still names the directory we opened, and
        `.lock` in it is still the file we locked.
        """
        d = self.dir.path
        if self.dir.moved():
            what = f"backup_dir '{d}' was removed or replaced"
        else:
            st = self._lstat_name()
            if st is not None and ident(st) == self.ident:
                return
            what = f"the lock file of backup_dir '{d}' was removed or replaced"
        holder = {}
        try:
            fd = os.open(os.path.join(d, LOCK_NAME), READ_FLAGS)
            try:
                holder = read_holder(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
        now = (f" It is now locked by pid {holder.get('pid')} on host "
               f"{holder.get('host')}." if holder else "")
        raise BackupLockedError(
            f"{what} while this process held its lock, so another process may "
            f"be using it now.{now} Nothing more is written; run training again "
            "to resume from what backup_dir holds.", d, holder)

    def unlink(self):
        """Removes `.lock` if the name still is our locked file."""
        st = self._lstat_name()
        if st is not None and ident(st) == self.ident:
            os.unlink(LOCK_NAME, dir_fd=self.dir.fd)

    def release(self, clear=True):
        """Releases the lock; with `clear`, first empties the holder record."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        if clear:
            try:
                os.ftruncate(fd, 0)  # a clean exit leaves no holder behind
            except OSError:
                pass
        os.close(fd)  # closing the only descriptor releases the flock
