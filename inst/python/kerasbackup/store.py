"""Crash-safe on-disk checkpoint store used by the kerasbackup callback.

A backup directory holds numbered checkpoints. Each checkpoint is written
completely into a private staging directory, flushed to disk and published
with a single atomic `os.rename`, so a process killed at any instant leaves
either the old or the new checkpoint, never a half-written one that looks
valid. Every load re-verifies sizes and checksums before returning data.

On-disk layout of `backup_dir`:

    .kerasbackup            marker: this directory belongs to kerasbackup
    .lock                   flock()ed by the writer; holds {pid, host, started}
    ckpt-0000000007/        one published checkpoint (seq = 7)
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

Only the standard library and numpy are imported, so helper processes that
use the store start quickly. POSIX only (needs `fcntl.flock`).
"""

import errno
import json
import os
import queue
import re
import secrets
import shutil
import socket
import stat
import threading
import time
import warnings
import weakref
import zlib
from datetime import datetime, timezone

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

FORMAT_VERSION = 1

MARKER_NAME = ".kerasbackup"
LOCK_NAME = ".lock"
MANIFEST_NAME = "manifest.json"
ARRAYS_NAME = "arrays.bin"
STATE_NAME = "state.json"
CKPT_PREFIX = "ckpt-"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"

_MANIFEST_FORMAT = "kerasbackup-checkpoint"
_CKPT_RE = re.compile(r"^ckpt-(\d{10})$")
# I/O and checksum granularity: big enough that per-call overhead vanishes,
# small enough that on load the checksum thread trails the reads closely.
_CHUNK = 16 * 1024 * 1024
# Below this a helper thread costs more than the checksum it hides.
_THREAD_MIN = 4 * 1024 * 1024


# ------------------------------------------------------------------ errors


class BackupError(Exception):
    """Base class of all store errors.

    Attributes:
        backup_dir: the backup directory the error is about.
    """

    def __init__(self, message, backup_dir=None):
        super().__init__(message)
        self.backup_dir = None if backup_dir is None else str(backup_dir)


class NoCheckpointError(BackupError):
    """`load(required=True)` found no checkpoint at all."""


class CorruptCheckpointError(BackupError):
    """No checkpoint in the directory passed verification.

    Attributes:
        problems: list of dicts `{checkpoint, file, kind, detail}`; `kind` is
            one of "missing", "truncated", "size mismatch", "checksum
            mismatch", "unknown format version N", "manifest unreadable",
            plus "unreadable" (an I/O error other than a missing file) and
            "invalid content" (a checksummed state.json that makes no sense,
            which only a writer bug can produce).
    """

    def __init__(self, message, backup_dir=None, problems=()):
        super().__init__(message, backup_dir)
        self.problems = list(problems)


class BackupDirError(BackupError):
    """backup_dir cannot be used (not a directory, foreign content, OS error).

    Attributes:
        os_error: the underlying OSError, or None.
    """

    def __init__(self, message, backup_dir=None, os_error=None):
        super().__init__(message, backup_dir)
        self.os_error = os_error


class BackupLockedError(BackupError):
    """Another live process or store object holds backup_dir's lock.

    Attributes:
        holder: dict `{pid, host, started}` read from the lock file (values
            may be None if the holder had not recorded itself yet).
    """

    def __init__(self, message, backup_dir=None, holder=None):
        super().__init__(message, backup_dir)
        self.holder = dict(holder or {})


class BackupWriteError(BackupError):
    """Writing to backup_dir failed; the previous checkpoint is untouched.

    Attributes:
        os_error: the underlying OSError.
    """

    def __init__(self, message, backup_dir=None, os_error=None):
        super().__init__(message, backup_dir)
        self.os_error = os_error


class SaveCancelled(Exception):
    """save() was cancelled before publishing; nothing was changed."""


class CheckpointFallbackWarning(UserWarning):
    """The newest checkpoint failed verification; an older one was loaded."""


class StaleLockWarning(UserWarning):
    """The lock file named a dead process on this host; the lock was taken over."""


# ----------------------------------------------------------------- helpers


_phase_hook = None


def set_phase_hook(hook):
    """Installs `hook(phase, info)`, called at each step of a save or delete.

    For tests and the benchmark: a hook can block (wait on a pipe or a
    marker file), signal, or raise an OSError to simulate a failing disk.
    Phases, in order: "staging" (staging dir created), "arrays_chunk" (after
    each chunk of arrays.bin is written; info has `written` and `total`),
    "arrays_written" (arrays.bin fsynced), "manifest_written" (the staging
    directory is complete and synced, just before publishing), "published"
    (renamed and the directory synced), "pruned"; and for delete():
    "deleting" (before anything is removed), "deleted". `info` always has
    `backup_dir`, and `path` where one is meant. The hook runs on the thread
    that writes (the background saver's, for asynchronous saves).
    `None` removes it. Returns the previous hook.
    """
    global _phase_hook
    previous, _phase_hook = _phase_hook, hook
    return previous


def _phase(name, **info):
    hook = _phase_hook
    if hook is not None:
        hook(name, info)


def _utc_now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _os_error_text(e):
    """Formats an OSError as 'strerror [ENAME] (path)' for messages."""
    name = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "?"
    text = f"{e.strerror or e} [{name}]"
    if getattr(e, "filename", None):
        text += f" (at '{e.filename}')"
    return text


def _fsync_dir(path):
    # A rename or a new file is only durable once its directory is synced.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd, mv):
    # os.write may write less than asked (signals, >2 GiB requests, disk
    # nearly full); loop until done so a short write never goes unnoticed.
    done, n = 0, len(mv)
    while done < n:
        done += os.write(fd, mv[done:])


def _write_file(path, data):
    """Creates `path` exclusively, writes `data`, fsyncs; returns (size, crc)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, memoryview(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(data), zlib.crc32(data)


def _read_into(f, mv):
    """Fills memoryview `mv` from unbuffered file `f`; returns bytes read."""
    done, n = 0, len(mv)
    while done < n:
        got = f.readinto(mv[done:])
        if not got:
            break
        done += got
    return done


def _remove_path(path):
    """Removes a file or directory tree, best effort (never raises)."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def _sync_and_remove(backup_dir, trash):
    """Makes the renames to trash durable, then deletes the trees (best effort)."""
    try:
        _fsync_dir(backup_dir)
    except OSError:
        return  # never delete before the rename is durable; open() retries
    for t in trash:
        _remove_path(t)


def _pid_alive(pid):
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


class _Crc32:
    """Running crc32 of a byte stream, optionally on a helper thread.

    zlib.crc32 releases the GIL for large buffers, so a thread lets the
    checksum of one chunk run on another core while the caller writes or
    reads the next one. Chunks must be fed in stream order and must not be
    modified until they are hashed (`wait_done`) or `result()` returns.
    """

    def __init__(self, threaded):
        self._value = 0
        self._done = 0
        self._queue = None
        if threaded:
            self._cond = threading.Condition()
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(
                target=self._run, name="kerasbackup-crc32", daemon=True
            )
            self._thread.start()

    def _run(self):
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            self._value = zlib.crc32(chunk, self._value)
            with self._cond:
                self._done += 1
                self._cond.notify_all()

    def feed(self, chunk):
        if self._queue is None:
            self._value = zlib.crc32(chunk, self._value)
            self._done += 1
        else:
            self._queue.put(chunk)

    def wait_done(self, n):
        """Blocks until the first `n` fed chunks have been hashed."""
        if self._queue is not None:
            with self._cond:
                self._cond.wait_for(lambda: self._done >= n)

    def result(self):
        """Waits for all fed chunks and returns the crc32 (stops the thread)."""
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
        return self._value


def _chunks(mv):
    for start in range(0, len(mv), _CHUNK):
        yield mv[start : start + _CHUNK]


def _json_default(obj):
    # numpy scalars sneak into histories and RNG states; store them as
    # plain Python numbers rather than failing the save.
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"meta is not JSON-serialisable: {type(obj).__name__} {obj!r}")


def _prepare_arrays(arrays):
    """Validates arrays and computes the data-file layout (no copies if C-contiguous)."""
    entries, buffers, offset = [], [], 0
    for name, value in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"array names must be str, got {name!r}")
        a = np.asarray(value)
        dt = a.dtype
        if dt.hasobject or dt.fields is not None or dt.subdtype is not None:
            raise TypeError(
                f"array {name!r} has dtype {dt}; object, structured and "
                "sub-array dtypes cannot be stored"
            )
        shape = list(a.shape)  # before any reshaping: keeps 0-d arrays 0-d
        if not a.flags.c_contiguous:
            a = a.copy(order="C")
        flat = a.reshape(-1).view(np.uint8)
        entries.append(
            {"name": name, "dtype": dt.str, "shape": shape,
             "offset": offset, "nbytes": int(flat.nbytes)}
        )
        if flat.nbytes:
            buffers.append(memoryview(flat))
        offset += int(flat.nbytes)
    return entries, buffers, offset


def _manifest_crc(body):
    # Canonical form so formatting of the file itself does not matter.
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return f"{zlib.crc32(canon.encode('utf-8')):08x}"


def _ckpt_dirs(backup_dir):
    """Returns [(seq, path)] of published checkpoint directories, oldest first."""
    found = []
    for entry in os.scandir(backup_dir):
        m = _CKPT_RE.match(entry.name)
        if m and entry.is_dir(follow_symlinks=False):
            found.append((int(m.group(1)), entry.path))
    found.sort()
    return found


def _format_problem(p):
    return f"{p['file']}: {p['kind']} ({p['detail']})"


# ------------------------------------------------------------ verification


def _read_manifest(path):
    """Reads and checks a checkpoint's manifest; returns (manifest, problem)."""
    mpath = os.path.join(path, MANIFEST_NAME)

    def bad(kind, detail):
        return None, (kind, detail)

    try:
        with open(mpath, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return bad("manifest unreadable", f"{MANIFEST_NAME} is missing")
    except OSError as e:
        return bad("manifest unreadable", f"cannot read it: {_os_error_text(e)}")
    if not raw.strip():
        return bad("manifest unreadable", f"{MANIFEST_NAME} is empty")
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return bad("manifest unreadable", f"invalid JSON: {e}")
    if not isinstance(m, dict) or m.get("format") != _MANIFEST_FORMAT:
        return bad("manifest unreadable", "not a kerasbackup checkpoint manifest")
    version = m.get("format_version")
    if version != FORMAT_VERSION:
        return bad(
            f"unknown format version {version}",
            f"this kerasbackup reads format version {FORMAT_VERSION}; "
            "the checkpoint was written by another kerasbackup version",
        )
    body = dict(m)
    stored = body.pop("manifest_crc32", None)
    computed = _manifest_crc(body)
    if stored != computed:
        return bad(
            "checksum mismatch",
            f"manifest crc32 is {stored!r}, its content hashes to {computed!r}",
        )
    files = m.get("files")
    ok = isinstance(files, dict) and all(
        isinstance(files.get(n), dict)
        and isinstance(files[n].get("size"), int)
        and isinstance(files[n].get("crc32"), str)
        for n in (ARRAYS_NAME, STATE_NAME)
    )
    if not ok:
        return bad("manifest unreadable", "file list is incomplete")
    return m, None


def _check_crc(problems, path, name, expected, computed):
    if f"{computed:08x}" != expected:
        problems.append({
            "checkpoint": path, "file": name, "kind": "checksum mismatch",
            "detail": f"manifest says crc32 {expected}, file hashes to {computed:08x}",
        })
        return False
    return True


def _parse_state(raw, data_size):
    """Parses state.json and checks its array table; raises ValueError."""
    state = json.loads(raw.decode("utf-8"))
    if not isinstance(state, dict) or not isinstance(state.get("arrays"), list):
        raise ValueError("no array table")
    offset = 0
    for e in state["arrays"]:
        dt = np.dtype(e["dtype"])
        shape = tuple(int(s) for s in e["shape"])
        if any(s < 0 for s in shape):
            raise ValueError(f"negative shape for {e['name']!r}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if e["offset"] != offset or e["nbytes"] != nbytes:
            raise ValueError(f"array table inconsistent at {e['name']!r}")
        offset += nbytes
    if offset != data_size:
        raise ValueError(f"arrays need {offset} bytes, {ARRAYS_NAME} has {data_size}")
    return state


def _read_arrays(path, state, size, load, crc, arrays):
    """Streams the data file through `crc`; fills `arrays` if `load`.

    Returns False if the file had exactly `size` bytes, True if it was
    shorter and None if it was longer (both only if it changed after the
    size check).
    """
    with open(path, "rb", buffering=0) as f:
        if load:
            # Read straight into the final arrays: no intermediate copies.
            for e in state["arrays"]:
                a = np.empty(tuple(e["shape"]), dtype=np.dtype(e["dtype"]))
                arrays[e["name"]] = a
                for chunk in _chunks(memoryview(a.reshape(-1).view(np.uint8))):
                    if _read_into(f, chunk) != len(chunk):
                        return True
                    crc.feed(chunk)
        else:
            # Two alternating buffers: read one while the other is hashed.
            bufs = [bytearray(min(_CHUNK, size)) for _ in range(2)] if size else []
            remaining, k = size, 0
            while remaining > 0:
                if k >= 2:
                    crc.wait_done(k - 1)  # chunk k-2 used this buffer
                mv = memoryview(bufs[k % 2])[: min(_CHUNK, remaining)]
                if _read_into(f, mv) != len(mv):
                    return True
                crc.feed(mv)
                remaining -= len(mv)
                k += 1
        if f.read(1):
            return None
    return False


def _inspect(path, mode):
    """Inspects one checkpoint directory.

    `mode` is "structure" (manifest, presence and sizes only), "verify"
    (also checksums, streaming) or "load" (verify while reading the arrays).
    Returns `(info, problems, loaded)`; `loaded` is `(arrays, meta)` only for
    a "load" that verified.
    """
    m = _CKPT_RE.match(os.path.basename(path))
    info = {
        "path": path, "seq": int(m.group(1)) if m else None,
        "epoch": None, "batch": None, "created": None,
        "size_bytes": 0, "verified": False, "problem": None,
    }
    problems = []
    try:
        info["size_bytes"] = sum(
            e.stat(follow_symlinks=False).st_size
            for e in os.scandir(path) if e.is_file(follow_symlinks=False)
        )
    except OSError:
        pass

    def finish(loaded=None):
        if problems:
            info["verified"] = False
            info["problem"] = "; ".join(_format_problem(p) for p in problems)
        return info, problems, loaded

    manifest, bad = _read_manifest(path)
    if bad:
        problems.append({"checkpoint": path, "file": MANIFEST_NAME,
                         "kind": bad[0], "detail": bad[1]})
        return finish()
    info.update(epoch=manifest.get("epoch"), batch=manifest.get("batch"),
                created=manifest.get("created"))
    files = manifest["files"]

    # Cheap checks on every file first, so all of them are reported at once.
    for name in (STATE_NAME, ARRAYS_NAME):
        expected = files[name]["size"]
        try:
            size = os.stat(os.path.join(path, name)).st_size
        except FileNotFoundError:
            problems.append({"checkpoint": path, "file": name, "kind": "missing",
                             "detail": f"{name} does not exist"})
            continue
        except OSError as e:
            problems.append({"checkpoint": path, "file": name, "kind": "unreadable",
                             "detail": _os_error_text(e)})
            continue
        if size != expected:
            kind = "truncated" if size < expected else "size mismatch"
            problems.append({
                "checkpoint": path, "file": name, "kind": kind,
                "detail": f"manifest says {expected} bytes, file has {size}",
            })
    if problems:
        return finish()
    if mode == "structure":
        info["verified"] = None  # not checked, see checkpoints(verify=False)
        return finish()

    current = STATE_NAME
    try:
        with open(os.path.join(path, STATE_NAME), "rb") as f:
            raw = f.read()
        if not _check_crc(problems, path, STATE_NAME,
                          files[STATE_NAME]["crc32"], zlib.crc32(raw)):
            return finish()
        try:
            state = _parse_state(raw, files[ARRAYS_NAME]["size"])
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            # The checksum matched, so the writer itself produced this.
            problems.append({"checkpoint": path, "file": STATE_NAME,
                             "kind": "invalid content", "detail": str(e)})
            return finish()

        current = ARRAYS_NAME
        size = files[ARRAYS_NAME]["size"]
        crc = _Crc32(threaded=size >= _THREAD_MIN)
        arrays = {}
        try:
            short = _read_arrays(os.path.join(path, ARRAYS_NAME), state, size,
                                 mode == "load", crc, arrays)
        finally:
            computed = crc.result()  # also stops the helper thread on errors
    except FileNotFoundError:
        problems.append({"checkpoint": path, "file": current, "kind": "missing",
                         "detail": f"{current} disappeared while being read"})
        return finish()
    except OSError as e:
        problems.append({"checkpoint": path, "file": current, "kind": "unreadable",
                         "detail": _os_error_text(e)})
        return finish()
    if short is not False:
        problems.append({"checkpoint": path, "file": ARRAYS_NAME,
                         "kind": "truncated" if short else "size mismatch",
                         "detail": "file changed size while being read"})
        return finish()
    if not _check_crc(problems, path, ARRAYS_NAME, files[ARRAYS_NAME]["crc32"], computed):
        return finish()
    info["verified"] = True
    if mode == "load":
        return finish((arrays, state.get("meta")))
    return finish()


# ------------------------------------------------------------------- store

# Stores holding a lock in this process. A child forked without exec (e.g. a
# multiprocessing data loader worker) shares the lock's open file, which
# would keep backup_dir locked after this process dies and let the child's
# close() wipe the holder record; the child therefore drops its copies.
_OPEN_STORES = weakref.WeakSet()


def _forget_locks_after_fork():
    for st in list(_OPEN_STORES):
        fd, st._lock_fd = st._lock_fd, None
        st._mutex = threading.RLock()  # may have been held by another thread
        st._remover = None
        if fd is not None:
            try:
                os.close(fd)  # the parent's lock is unaffected
            except OSError:
                pass
    _OPEN_STORES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_after_fork)



class CheckpointStore:
    """Exclusive, crash-safe reader/writer of one backup directory.

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
        self.backup_dir = os.path.abspath(os.fspath(backup_dir))
        self.keep = int(keep)
        self._mutex = threading.RLock()
        self._lock_fd = None
        self._last_seq = 0
        self._remover = None  # background deletion of pruned checkpoints

    # ------------------------------------------------------------ open/close

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        # An unclosed store would keep the lock until the process exits.
        try:
            self.close()
        except Exception:
            pass

    @property
    def is_open(self):
        """Whether this object currently holds backup_dir's lock."""
        return self._lock_fd is not None

    def open(self):
        """Checks backup_dir, takes its lock and removes leftovers of killed writers.

        Creates backup_dir (and parents) if missing. Raises BackupDirError if
        it is not a directory, cannot be created, or is a non-empty directory
        without the `.kerasbackup` marker; BackupLockedError if another live
        process or store object holds the lock. Warns StaleLockWarning when
        taking over the lock of a dead process on this host. Idempotent.
        Returns self.
        """
        with self._mutex:
            if self._lock_fd is not None:
                return self
            d = self.backup_dir
            if fcntl is None:  # pragma: no cover
                raise BackupDirError(
                    f"backup_dir '{d}': file locking (fcntl) is not available "
                    "on this platform", d)
            self._check_dir()
            fd = self._acquire_lock()
            try:
                self._lock_fd = fd
                _OPEN_STORES.add(self)
                marker = os.path.join(d, MARKER_NAME)
                if not os.path.exists(marker):
                    _write_file(marker, json.dumps(
                        {"kerasbackup": True, "format_version": FORMAT_VERSION,
                         "created": _utc_now()}).encode())
                    _fsync_dir(d)
                self._remove_leftovers()
            except OSError as e:
                self._release_lock()
                raise BackupDirError(
                    f"cannot use backup_dir '{d}': {_os_error_text(e)}", d, e) from e
            except BaseException:
                self._release_lock()
                raise
            return self

    def close(self):
        """Releases the lock (idempotent). The checkpoints stay on disk.

        Waits for the deletion of pruned checkpoints to finish first.
        """
        with self._mutex:
            self._wait_for_removal()
            self._release_lock()

    def _check_dir(self):
        d = self.backup_dir
        try:
            st = os.stat(d)
        except FileNotFoundError:
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as e:
                raise BackupDirError(
                    f"cannot create backup_dir '{d}': {_os_error_text(e)}", d, e) from e
            return
        except OSError as e:
            raise BackupDirError(
                f"cannot access backup_dir '{d}': {_os_error_text(e)}", d, e) from e
        if not stat.S_ISDIR(st.st_mode):
            e = OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), d)
            raise BackupDirError(
                f"backup_dir '{d}' exists and is not a directory: "
                f"{_os_error_text(e)}", d, e)
        try:
            names = os.listdir(d)
        except OSError as e:
            raise BackupDirError(
                f"cannot list backup_dir '{d}': {_os_error_text(e)}", d, e) from e
        # A bare lock file means another store is initialising it right now.
        foreign = sorted(set(names) - {LOCK_NAME})
        if MARKER_NAME not in names and foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise BackupDirError(
                f"backup_dir '{d}' is not empty and was not created by "
                f"kerasbackup (no {MARKER_NAME} marker; it contains {shown}). "
                "Refusing to write into it: choose a new or empty directory.", d)

    def _acquire_lock(self):
        d = self.backup_dir
        path = os.path.join(d, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise BackupDirError(
                f"cannot open lock file of backup_dir '{d}': {_os_error_text(e)}",
                d, e) from e
        try:
            try:
                self._flock(fd)
            except BlockingIOError:
                holder = self._read_holder(fd, wait=True)
                pid, host = holder.get("pid"), holder.get("host")
                here = host == socket.gethostname()
                who = ("another CheckpointStore in this process"
                       if here and pid == os.getpid() else "another process")
                note = ""
                if here and isinstance(pid, int) and pid != os.getpid() \
                        and not _pid_alive(pid):
                    note = (" That process is no longer running, but the lock "
                            "file is still held open, probably by a process "
                            "it started.")
                raise BackupLockedError(
                    f"backup_dir '{d}' is in use by {who}: pid {pid} on host "
                    f"{host}, started {holder.get('started')}.{note} Only one "
                    "training run may use a backup_dir at a time; stop the "
                    "other one or choose another backup_dir.", d, holder) from None
            previous = self._read_holder(fd)
            pid, host = previous.get("pid"), previous.get("host")
            if (isinstance(pid, int) and host == socket.gethostname()
                    and pid != os.getpid() and not _pid_alive(pid)):
                warnings.warn(
                    f"backup_dir '{d}': taking over the lock of process {pid} "
                    f"on host {host} (started {previous.get('started')}), "
                    "which is no longer running; it was probably killed.",
                    StaleLockWarning, stacklevel=3)
            data = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "started": _utc_now()}).encode()
            # Overwrite in place, then cut: a reader never sees an empty file
            # unless the old record was empty too.
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        except BackupLockedError:
            os.close(fd)
            raise
        except OSError as e:
            os.close(fd)
            raise BackupDirError(
                f"cannot lock backup_dir '{d}': {_os_error_text(e)}", d, e) from e
        except BaseException:
            os.close(fd)
            raise
        return fd

    @classmethod
    def _flock(cls, fd):
        """Takes the lock without blocking on a live holder (BlockingIOError)."""
        for attempt in range(100):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                # A killed multi-threaded process looks dead (zombie leader)
                # a few ms before its last thread closes the lock file; only
                # then wait, a live holder is reported at once.
                holder = cls._read_holder(fd)
                pid = holder.get("pid")
                if not (isinstance(pid, int) and pid != os.getpid()
                        and holder.get("host") == socket.gethostname()
                        and not _pid_alive(pid)) or attempt == 99:
                    raise
            time.sleep(0.02)

    @staticmethod
    def _read_holder(fd, wait=False):
        """Reads the holder record from the lock file; {} if unreadable."""
        # The holder writes its record just after locking; give it a moment.
        for attempt in range(20 if wait else 1):
            try:
                raw = os.pread(fd, 4096, 0)
                holder = json.loads(raw.decode("utf-8"))
                if isinstance(holder, dict):
                    return holder
            except (OSError, ValueError):
                pass
            if wait:
                time.sleep(0.01)
        return {}

    def _release_lock(self):
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        _OPEN_STORES.discard(self)
        try:
            os.ftruncate(fd, 0)  # a clean exit leaves no holder behind
        except OSError:
            pass
        os.close(fd)  # closing the only descriptor releases the flock

    def _remove_leftovers(self):
        # Only called with the lock held, so no live writer owns these.
        for entry in os.scandir(self.backup_dir):
            if entry.name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
                _remove_path(entry.path)

    def _ensure_open(self):
        if self._lock_fd is None:
            self.open()

    # ------------------------------------------------------------------ save

    def save(self, arrays, meta, epoch, batch, cancel=None):
        """Writes and atomically publishes a new checkpoint; returns its info dict.

        `arrays` maps names to numpy arrays (any shape, fixed-size dtype),
        `meta` must be JSON-serialisable (numpy scalars are converted).
        Arrays are written straight from their memory and must not change
        until save() returns. On any OSError raises BackupWriteError naming
        backup_dir and the error; the staging directory is removed and the
        previous checkpoints are untouched. Older checkpoints beyond `keep`
        are removed only after the new one is durable. If `cancel` (a
        threading.Event) is set before the publishing rename, raises
        SaveCancelled and leaves the directory as it was.
        """
        # Everything that can fail on bad input fails before touching disk.
        entries, buffers, total = _prepare_arrays(arrays)
        state_bytes = json.dumps(
            {"format_version": FORMAT_VERSION, "arrays": entries, "meta": meta},
            default=_json_default).encode("utf-8")
        epoch = None if epoch is None else int(epoch)
        batch = None if batch is None else int(batch)

        with self._mutex:
            self._ensure_open()
            d = self.backup_dir
            staging = os.path.join(
                d, f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
            try:
                os.mkdir(staging)
                _phase("staging", backup_dir=d, path=staging)
                files = {}
                files[ARRAYS_NAME] = self._write_arrays(
                    os.path.join(staging, ARRAYS_NAME), buffers, total)
                _phase("arrays_written", backup_dir=d, path=staging)
                size, crc = _write_file(os.path.join(staging, STATE_NAME), state_bytes)
                files[STATE_NAME] = {"size": size, "crc32": f"{crc:08x}"}
                seq = self._next_seq()
                created = _utc_now()
                manifest = {
                    "format": _MANIFEST_FORMAT, "format_version": FORMAT_VERSION,
                    "seq": seq, "created": created, "epoch": epoch, "batch": batch,
                    "files": files,
                    "writer": {"pid": os.getpid(), "host": socket.gethostname()},
                }
                manifest["manifest_crc32"] = _manifest_crc(manifest)
                # The manifest goes last: a directory without one is never valid.
                manifest_size, _ = _write_file(
                    os.path.join(staging, MANIFEST_NAME),
                    json.dumps(manifest, indent=1, sort_keys=True).encode())
                _fsync_dir(staging)
                _phase("manifest_written", backup_dir=d, path=staging)
                final = os.path.join(d, f"{CKPT_PREFIX}{seq:010d}")
                if cancel is not None and cancel.is_set():
                    # The caller gave up (e.g. a second preemption signal):
                    # the previous checkpoint stays the newest.
                    raise SaveCancelled(f"save to '{d}' was cancelled")
                os.rename(staging, final)
            except OSError as e:
                _remove_path(staging)
                raise BackupWriteError(
                    f"could not write a checkpoint to backup_dir '{d}': "
                    f"{_os_error_text(e)}. The previous checkpoint, if any, is "
                    "unchanged.", d, e) from e
            except BaseException:
                _remove_path(staging)
                raise
            self._last_seq = seq
            try:
                _fsync_dir(d)
            except OSError as e:
                # Published but maybe not durable: keep the older ones.
                raise BackupWriteError(
                    f"checkpoint {final} was published in backup_dir '{d}' "
                    f"but syncing the directory failed: {_os_error_text(e)}. "
                    "Older checkpoints were kept.", d, e) from e
            _phase("published", backup_dir=d, path=final)
            self._prune()
            _phase("pruned", backup_dir=d, path=final)
            size_bytes = sum(f["size"] for f in files.values()) + manifest_size
            return {"path": final, "seq": seq, "epoch": epoch, "batch": batch,
                    "created": created, "size_bytes": size_bytes,
                    "verified": True, "problem": None}

    @staticmethod
    def _write_arrays(path, buffers, total):
        """Writes all array buffers to one file with one fsync; returns size/crc.

        The crc32 is computed on a helper thread while fsync waits for the
        disk: the CPU is idle then, whereas hashing during the writes would
        compete with the copy into the page cache (measured slower on a busy
        2-core machine, the usual case while training continues).
        """
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            written = 0
            for buf in buffers:
                for chunk in _chunks(buf):
                    _write_all(fd, chunk)
                    written += len(chunk)
                    _phase("arrays_chunk", backup_dir=os.path.dirname(
                        os.path.dirname(path)), path=path, written=written,
                        total=total)
            crc = _Crc32(threaded=total >= _THREAD_MIN)
            try:
                for buf in buffers:
                    for chunk in _chunks(buf):
                        crc.feed(chunk)
                os.fsync(fd)
            finally:
                value = crc.result()
        finally:
            os.close(fd)
        return {"size": total, "crc32": f"{value:08x}"}

    def _next_seq(self):
        # Any name that looks like a checkpoint counts, even a stray file, so
        # the rename target never exists.
        seqs = [int(m.group(1)) for m in
                (_CKPT_RE.match(n) for n in os.listdir(self.backup_dir)) if m]
        return max(seqs + [self._last_seq]) + 1

    def _trash(self, paths):
        """Renames checkpoint dirs to .trash-* names; returns the new names.

        The caller must fsync backup_dir before deleting any of them, so that
        a half-deleted tree can never come back under a checkpoint name.
        """
        trash = []
        for path in paths:
            t = os.path.join(self.backup_dir, f"{TRASH_PREFIX}{os.getpid()}-"
                             f"{secrets.token_hex(4)}-{os.path.basename(path)}")
            os.rename(path, t)
            trash.append(t)
        return trash

    def _prune(self):
        """Removes published checkpoints beyond `keep`, oldest first, best effort.

        They are renamed to .trash-* names at once, so no reader sees them
        after save() returns. Syncing that rename and the deletion (about a
        quarter of a save for big files) run on a background thread that the
        next prune, close() and delete() wait for. Trash left by a killed
        process is removed at the next open().
        """
        d = self.backup_dir
        self._wait_for_removal()
        try:
            trash = self._trash([p for _, p in _ckpt_dirs(d)[: -self.keep]])
        except OSError as e:
            # The new checkpoint is safe; leftovers go at the next save/open().
            warnings.warn(
                f"backup_dir '{d}': could not remove an old checkpoint: "
                f"{_os_error_text(e)}", RuntimeWarning, stacklevel=3)
            return
        if trash:
            self._remover = threading.Thread(
                target=_sync_and_remove, args=(d, trash),
                name="kerasbackup-prune", daemon=True)
            self._remover.start()

    def _wait_for_removal(self):
        remover, self._remover = self._remover, None
        if remover is not None:
            remover.join()

    # ------------------------------------------------------------------ load

    def load(self, required=False, accept=None):
        """Returns `(arrays, meta, info)` of the newest checkpoint that verifies.

        Every file's presence, size and crc32 are checked before anything is
        returned. `accept(arrays, meta, info)`, if given, is called for each
        checkpoint that verified, newest first; it returns None to take it, or
        a list of problems `{file, kind, detail}` to reject it, which then
        count as a failed verification. If the newest checkpoint fails and an older one verifies,
        that one is returned with a CheckpointFallbackWarning saying which
        checkpoint failed and why. If checkpoints exist but none verifies,
        raises CorruptCheckpointError (files are left in place). With no
        checkpoint at all returns None, or raises NoCheckpointError if
        `required`.
        """
        with self._mutex:
            self._ensure_open()
            d = self.backup_dir
            failed = []
            for seq, path in reversed(_ckpt_dirs(d)):
                info, problems, loaded = _inspect(path, "load")
                if not problems and accept is not None:
                    problems = [dict(p, checkpoint=path)
                                for p in accept(*loaded, info) or ()]
                if problems:
                    failed.extend(problems)
                    continue
                if failed:
                    why = "; ".join(f"'{p['checkpoint']}' {_format_problem(p)}"
                                    for p in failed)
                    warnings.warn(
                        f"backup_dir '{d}': newer checkpoint failed verification "
                        f"({why}); loaded the older checkpoint '{path}' "
                        f"(epoch {info['epoch']}, batch {info['batch']}) instead. "
                        "The failed checkpoint was left in place.",
                        CheckpointFallbackWarning, stacklevel=2)
                arrays, meta = loaded
                return arrays, meta, info
            if failed:
                why = "; ".join(f"checkpoint '{p['checkpoint']}': "
                                f"{_format_problem(p)}" for p in failed)
                raise CorruptCheckpointError(
                    f"no checkpoint in backup_dir '{d}' passed verification: "
                    f"{why}. The files were left in place for inspection.",
                    d, failed)
            if required:
                raise NoCheckpointError(
                    f"backup_dir '{d}' contains no checkpoint", d)
            return None

    # ------------------------------------------------------------ inspection

    def checkpoints(self, verify=True):
        """Lists the checkpoints, oldest first, as info dicts.

        Each dict has path, seq, epoch, batch, created, size_bytes, verified
        and problem. Needs no lock, so it also works while another process
        writes. With `verify=False` checksums are skipped: `verified` is then
        None for checkpoints whose manifest and sizes are fine.
        """
        return backup_info(self.backup_dir, verify=verify)

    @property
    def latest(self):
        """Info dict of the newest checkpoint (checksums not re-read), or None."""
        found = self.checkpoints(verify=False)
        return found[-1] if found else None

    # ---------------------------------------------------------------- delete

    def delete(self):
        """Removes everything the store wrote, then backup_dir if it is empty.

        Deletes checkpoints, staging and trash directories, the marker and the
        lock file; files that others put into backup_dir stay (and then so
        does the directory). Takes the lock first, so it refuses a directory
        in use or not created by kerasbackup. The store is closed afterwards.
        A missing backup_dir is a no-op.
        """
        with self._mutex:
            d = self.backup_dir
            if self._lock_fd is None and not os.path.lexists(d):
                return
            self.open()
            self._wait_for_removal()
            try:
                _phase("deleting", backup_dir=d, path=d)
                trash = self._trash([p for _, p in _ckpt_dirs(d)])
                if trash:
                    _fsync_dir(d)
                for t in trash:
                    shutil.rmtree(t)
                self._remove_leftovers()
                # Marker last: an interrupted delete stays recognisable.
                marker = os.path.join(d, MARKER_NAME)
                if os.path.exists(marker):
                    os.unlink(marker)
                os.unlink(os.path.join(d, LOCK_NAME))
            except OSError as e:
                self._release_lock()
                raise BackupWriteError(
                    f"could not delete backup_dir '{d}': {_os_error_text(e)}",
                    d, e) from e
            self._release_lock()
            try:
                os.rmdir(d)
            except OSError:
                pass  # not empty: the user's own files stay
            _phase("deleted", backup_dir=d, path=d)


def backup_info(backup_dir, verify=True):
    """Lists the checkpoints in `backup_dir`, oldest first, without locking.

    Safe to call while another process holds the lock and writes; a
    checkpoint removed during the scan is simply left out. Returns [] if
    backup_dir does not exist. See CheckpointStore.checkpoints() for the
    dict keys.
    """
    d = os.path.abspath(os.fspath(backup_dir))
    try:
        dirs = _ckpt_dirs(d)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise BackupDirError(
            f"cannot read backup_dir '{d}': {_os_error_text(e)}", d, e) from e
    result = []
    for seq, path in dirs:
        info, problems, _ = _inspect(path, "verify" if verify else "structure")
        if problems and not os.path.isdir(path):
            continue  # pruned by the writer while we looked at it
        result.append(info)
    return result
