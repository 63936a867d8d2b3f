"""Local file I/O for the store: safe opens, write and read loops, fsync, crc32.

Every file is opened relative to a directory descriptor and with O_NOFOLLOW,
so a symlink planted in backup_dir is never followed, and a path that is
renamed or replaced after it was opened cannot redirect a write. Files are
read only if fstat() says they are regular, and opened with O_NONBLOCK so a
FIFO never blocks the open. POSIX only. A big data file is written by
direct I/O where the file system allows it (see write_stream()).
"""

import errno
import fcntl
import mmap
import os
import queue
import stat
import threading
import weakref

import numpy as np

# crc32 (zlib's polynomial and values): ISA-L's is ~7x faster than zlib's
# (10 ms against 74 ms for 302 MB here); zlib's where isal is not installed.
# crc32_combine(a, b, len_b) joins the crc32s of two neighbouring byte runs;
# Python's zlib module lacks it, so without isal it is None.
try:
    from isal.isal_zlib import crc32, crc32_combine
    CRC32_IMPL = "isal"
except ImportError:  # isal is pinned in requirements.txt; zlib gives the same values
    from zlib import crc32
    crc32_combine = None
    CRC32_IMPL = "zlib"

# I/O and checksum granularity: big enough that per-call overhead vanishes,
# small enough that on load the checksum thread trails the reads closely.
CHUNK = 16 * 1024 * 1024
# Below this a helper thread costs more than the checksum it hides.
THREAD_MIN = 4 * 1024 * 1024

# A big data file is written with direct I/O (O_DIRECT) where the file
# system allows it: from the caller's memory where it is page-aligned, else
# from a small reused buffer, straight to the disk, past the page cache. The cache's copy costs as much CPU as the rest of a save, and
# far more on a VM that hands freed memory back to its host (first touches
# then fault: measured 2 ms per MB). Training threads get that CPU instead.
# Direct I/O needs the buffer, the file offset and the length aligned to the
# device's logical block; a page covers the usual 512 and 4096 bytes.
ALIGN = mmap.PAGESIZE
DIRECT_CHUNK = 8 * 1024 * 1024  # a multiple of ALIGN
# Below this the cache's copy costs less than direct I/O's wait for the disk.
DIRECT_MIN = 1024 * 1024
_DIRECT = getattr(os, "O_DIRECT", 0)

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
FILE_MODE = 0o644
DIR_MODE = 0o755


class NotRegularFileError(OSError):
    """A name we were to open as a file is a symlink, FIFO, device or dir.

    Attributes:
        what: e.g. "a symbolic link", "a FIFO".
    """

    def __init__(self, name, what):
        super().__init__(errno.EINVAL, f"is {what}, not a regular file", name)
        self.what = what


def describe_mode(mode):
    """'a FIFO', 'a directory', ... for an st_mode."""
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISREG, "a regular file")):
        if test(mode):
            return what
    return "not a regular file"


def os_error_text(e):
    """Formats an OSError as 'strerror [ENAME] (at path)' for messages."""
    name = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "?"
    text = f"{e.strerror or e} [{name}]"
    if getattr(e, "filename", None):
        text += f" (at '{e.filename}')"
    return text


def ident(st):
    """What identifies a file while it exists: (device, inode)."""
    return st.st_dev, st.st_ino


# -------------------------------------------------------------- reading


def open_regular(name, dir_fd):
    """Opens `name` (relative to dir_fd) for reading; returns (fd, stat).

    Raises NotRegularFileError for anything but a regular file (a symlink is
    refused by O_NOFOLLOW, a FIFO opens at once thanks to O_NONBLOCK and is
    then refused by fstat) and the usual OSErrors otherwise.
    """
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: FreeBSD's answer
            raise NotRegularFileError(name, "a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(name, describe_mode(st.st_mode))
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_into(fd, mv):
    """Fills memoryview `mv` from `fd`; returns the bytes read (< len at EOF)."""
    done, n = 0, len(mv)
    while done < n:
        got = os.readv(fd, [mv[done:]])
        if not got:
            break
        done += got
    return done


class Closing:
    """Context manager support for objects with a `close()` method."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class OpenFile(Closing):
    """A regular file opened for reading; reads never go past `size` + 1."""

    def __init__(self, name, dir_fd):
        self.fd, st = open_regular(name, dir_fd)
        self.size = st.st_size

    def readinto(self, mv):
        return read_into(self.fd, mv)

    def read(self, n):
        """Reads up to `n` bytes (fewer only at end of file)."""
        buf = bytearray(n)
        got = read_into(self.fd, memoryview(buf))
        del buf[got:]
        return bytes(buf)

    def at_eof(self):
        """Whether the file ends here (it did not grow while being read)."""
        return not os.read(self.fd, 1)

    def close(self):
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


# HeldFiles with handles still open. A child forked without exec (e.g. a
# data loader worker) gets copies of them but not the thread that would
# close them: it closes its copies, so that it never keeps the space in use.
_HELD = weakref.WeakSet()


def _close_held_after_fork():
    for held in list(_HELD):
        held.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_after_fork)


class HeldFiles(Closing):
    """Open handles on big files about to be unlinked.

    A file's blocks are freed when its last reference goes: with a handle
    held, unlink() only drops the name (0.02 ms against ~50 ms for 300 MB on
    ext4) and close() pays instead, on whichever thread calls it. If the
    process dies first the kernel frees them (ext4 keeps an unlinked open
    inode on its orphan list, so a crash leaks nothing either).
    """

    MIN_SIZE = 1024 * 1024  # smaller files are freed in microseconds

    def __init__(self):
        self._fds = []
        _HELD.add(self)

    def __len__(self):
        return len(self._fds)

    def hold(self, name, dir_fd):
        """Keeps `name` open if it is a regular file of MIN_SIZE or more."""
        try:
            fd, st = open_regular(name, dir_fd)
        except OSError:
            return  # not ours to hold: the caller's unlink decides
        if st.st_size >= self.MIN_SIZE:
            self._fds.append(fd)
        else:
            os.close(fd)

    def close(self):
        # One at a time: a child forked meanwhile, or a second closer, finds
        # exactly the fds still open.
        while True:
            try:
                fd = self._fds.pop()
            except IndexError:
                return
            try:
                os.close(fd)
            except OSError:
                pass  # only the freeing of blocks already unlinked


# -------------------------------------------------------------- writing


def write_all(fd, mv):
    # os.write may write less than asked (signals, >2 GiB requests, disk
    # nearly full); loop until done so a short write never goes unnoticed.
    done, n = 0, len(mv)
    while done < n:
        done += os.write(fd, mv[done:])


def create_file(name, dir_fd):
    """Creates `name` exclusively (never through a symlink); returns its fd."""
    return os.open(name, CREATE_FLAGS, FILE_MODE, dir_fd=dir_fd)


def write_file(name, data, dir_fd, sync=True):
    """Creates `name` exclusively, writes `data`, fsyncs (if `sync`); returns (size, crc)."""
    fd = create_file(name, dir_fd)
    try:
        write_all(fd, memoryview(data))
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return len(data), crc32(data)


def pwrite_all(fd, mv, offset):
    """Writes all of `mv` at `offset` (looping over short writes)."""
    done, n = 0, len(mv)
    while done < n:
        done += os.pwrite(fd, mv[done:], offset + done)


def _set_direct(fd, on):
    """Turns O_DIRECT on or off for `fd`; returns whether it is on."""
    if not _DIRECT:
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _DIRECT if on else flags & ~_DIRECT)
    except OSError:
        if on:
            return False  # not supported by this file system: buffered
        raise
    return on


class _BouncePool:
    """Aligned buffers for direct I/O, kept for reuse: fresh memory's first
    touch costs more than the copy into a warm buffer."""

    def __init__(self, keep=2):
        self._free = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self):
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, DIRECT_CHUNK)  # page-aligned

    def give(self, buf):
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)
                return
        try:
            buf.close()
        except BufferError:
            pass  # a failed write's traceback still holds a slice: GC frees it


_BOUNCE = _BouncePool()


def write_stream(fd, buffers, progress=None, checksum=True):
    """Writes `buffers` (byte memoryviews) back to back into the empty file `fd`.

    Returns `(size, crc32)`, the crc32 None with `checksum=False` (the
    caller has it already). Big files go by direct I/O: page-aligned
    regions of the sources (see coalesce()) as they are, the rest through
    an aligned bounce buffer, the crc32 taken from each chunk as it is
    written. Where the file system refuses direct I/O, they go through the
    page cache as small ones do. `progress(written, total)` is called after each chunk.
    The caller fsyncs: direct I/O skips the cache, not the need for fsync
    (the device's cache and the file's metadata).
    """
    total = sum(len(b) for b in buffers)
    if total < DIRECT_MIN or not _set_direct(fd, True):
        written = 0
        for buf in buffers:
            for chunk in chunks(buf):
                write_all(fd, chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written, total)
        if not checksum:
            return total, None
        crc = 0
        for buf in buffers:
            crc = crc32(buf, crc)
        return total, crc
    bounce = _BOUNCE.take()
    view = memoryview(bounce)
    try:
        crc = _write_direct(fd, buffers, total, view, progress, checksum)
        _set_direct(fd, False)  # leave the descriptor as it was opened
        return total, crc
    finally:
        view.release()
        _BOUNCE.give(bounce)


def _write_direct(fd, buffers, total, bounce, progress, checksum):
    writer = _DirectWriter(fd)
    crc, offset, filled = (0 if checksum else None), 0, 0

    def put(data):
        nonlocal crc, offset
        writer.write(data, offset)
        if checksum:
            crc = crc32(data, crc)
        offset += len(data)
        if progress is not None:
            progress(offset, total)

    for src in buffers:
        pos, address = 0, address_of(src)
        while pos < len(src):
            left = len(src) - pos
            if filled == 0 and offset % ALIGN == 0 and (address + pos) % ALIGN == 0 \
                    and left >= ALIGN:
                # Aligned already (a block laid out as the file, see
                # saver.HostBuffers): straight from the source, no copy.
                n = min(DIRECT_CHUNK, left - left % ALIGN)
                put(src[pos : pos + n])
                pos += n
                continue
            # Otherwise through the aligned bounce buffer, across arrays.
            k = min(len(bounce) - filled, left)
            bounce[filled : filled + k] = src[pos : pos + k]
            filled += k
            pos += k
            if filled == len(bounce):
                put(bounce)
                filled = 0
    if filled:
        put(bounce[:filled])  # the only write whose length may be unaligned
    return crc


class _DirectWriter:
    """pwrite()s by direct I/O while it is on; falls back to the page cache."""

    def __init__(self, fd):
        self.fd = fd
        self.direct = True

    def write(self, data, offset):
        # Every write but the last is a multiple of ALIGN at an aligned
        # offset; the last one's unaligned tail goes through the page cache.
        n = len(data)
        whole = n - n % ALIGN
        if self.direct and whole:
            try:
                pwrite_all(self.fd, data[:whole], offset)
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.EFAULT):
                    raise
                # Direct I/O refused after all (alignment, file system, or
                # memory it cannot pin): the same bytes through the page cache.
                self.direct = _set_direct(self.fd, False)
                pwrite_all(self.fd, data[:whole], offset)
        elif whole:
            pwrite_all(self.fd, data[:whole], offset)
        if whole < n:
            if self.direct:
                self.direct = _set_direct(self.fd, False)
            pwrite_all(self.fd, data[whole:], offset + whole)


def address_of(buf):
    """The memory address of a buffer's first byte."""
    return np.frombuffer(buf, np.uint8).__array_interface__["data"][0] if len(buf) else 0


def coalesce(arrays):
    """Byte views of `arrays` (1-d uint8, C-contiguous), neighbours in one
    block of memory joined into one view: fewer writes, and a block that
    starts page-aligned goes to direct I/O without a copy."""
    views, run = [], None  # run: [root, start address, end address, first array]
    for a in arrays:
        root = a
        while type(root.base) is np.ndarray:  # a subclass may reshape otherwise
            root = root.base
        start = a.__array_interface__["data"][0]
        if run is not None and run[0] is root and run[2] == start and root.flags.c_contiguous:
            run[2] = start + a.nbytes
            continue
        if run is not None:
            views.append(_run_view(*run))
        run = [root, start, start + a.nbytes, a]
    if run is not None:
        views.append(_run_view(*run))
    return views


def _run_view(root, start, end, first):
    if end - start == first.nbytes:
        return memoryview(first)
    base = root.__array_interface__["data"][0]
    return memoryview(root.reshape(-1).view(np.uint8))[start - base : end - base]


def chunks(mv):
    for start in range(0, len(mv), CHUNK):
        yield mv[start : start + CHUNK]


class Crc32:
    """Running crc32 of a byte stream, optionally on a helper thread.

    crc32 (both zlib's and isal's) releases the GIL, so a thread lets the
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
                target=self._run, name="kerasbackup-crc32", daemon=True)
            self._thread.start()

    def _run(self):
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            self._value = crc32(chunk, self._value)
            with self._cond:
                self._done += 1
                self._cond.notify_all()

    def feed(self, chunk):
        if self._queue is None:
            self._value = crc32(chunk, self._value)
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


# ---------------------------------------------------------- directories


class DirHandle(Closing):
    """An open directory: every name in it is resolved through this fd.

    `ident` is the (device, inode) it had when opened; `moved()` tells
    whether `path` still names it.
    """

    def __init__(self, path, fd):
        self.path = path
        self.fd = fd
        self.ident = ident(os.fstat(fd))

    @classmethod
    def open(cls, path, follow=True):
        """Opens directory `path` (following a symlink only if `follow`)."""
        flags = DIR_FLAGS if not follow else DIR_FLAGS & ~_NOFOLLOW
        return cls(path, os.open(path, flags))

    @classmethod
    def open_in(cls, parent, name):
        """Opens `name` inside `parent`, refusing a symlink."""
        return cls(os.path.join(parent.path, name), os.open(name, DIR_FLAGS, dir_fd=parent.fd))

    def join(self, name):
        return os.path.join(self.path, name)

    def names(self):
        return os.listdir(self.fd)

    def lstat(self, name):
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def moved(self):
        """Whether `path` now names another directory (or nothing)."""
        try:
            return ident(os.stat(self.path)) != self.ident
        except OSError:
            return True

    def sync(self):
        # A rename or a new file is only durable once its directory is synced.
        os.fsync(self.fd)

    def close(self):
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


class CheckpointFiles(Closing):
    """The files of one local checkpoint directory, for verification.

    `open(name)` gives an OpenFile or raises FileNotFoundError,
    NotRegularFileError or another OSError; an object-store back end offers
    the same three methods.
    """

    def __init__(self, parent, name):
        self.path = parent.join(name)
        self._dir = DirHandle.open_in(parent, name)

    def open(self, name):
        return OpenFile(name, self._dir.fd)

    def size_bytes(self):
        """Total size of the regular files in the checkpoint directory."""
        total = 0
        with os.scandir(self._dir.fd) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
        return total

    def close(self):
        self._dir.close()
