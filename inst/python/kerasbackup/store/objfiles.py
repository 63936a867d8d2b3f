"""An object-store checkpoint's objects: their names, and reading them for verify.

Layout under a backup_dir URL (see objstore for the commit protocol):

    .kerasbackup            marker: this prefix belongs to kerasbackup
    .lease                  the writer's lease (see lease)
    LATEST                  {"checkpoints": [{seq, manifest_crc32}], "owner", ...}
    ckpt-0000000007.json    manifest of checkpoint 7: the local manifest's
                            fields plus "objects": "data-<hex>"
    data-<hex>/arrays.bin   all arrays' raw bytes, back to back, C order
    data-<hex>/state.json   array table and the caller's meta

ObjectCheckpointFiles offers one checkpoint to `verify.inspect` with the
interface of the local store's files, so both back ends verify and fall
back with the same code. `open()` only asks for an object's size; reads are
ranged GETs, and a reader going through a file front to back (as verify
does) is served by downloads running ahead of it in parallel.

A missing object is FileNotFoundError (damage, reported by verify). Any
other failure to reach the store raises StoreUnreachable, which is not an
OSError: verify lets it through, so an unreachable store never makes a
checkpoint look damaged or triggers a fallback.
"""

import collections
import concurrent.futures
import errno
import re

from kerasbackup.store.format import (
    ARRAYS_NAME, MANIFEST_NAME, MARKER_NAME, MAX_MANIFEST_BYTES, STATE_NAME,
    FormatError, checkpoint_name, parse_checkpoint_name)
from kerasbackup.store.lease import LEASE_NAME
from kerasbackup.store.objclient import PreconditionFailed

LATEST_NAME = "LATEST"
CONTROL_NAMES = (MARKER_NAME, LEASE_NAME, LATEST_NAME)
MANIFEST_SUFFIX = ".json"
DATA_PREFIX_RE = re.compile(r"^data-[0-9a-f]{24}$")
_DATA_RE = re.compile(r"^(data-[0-9a-f]{24})/(arrays\.bin|state\.json|arrays\.bin\.part-\d{5})$")
# Download granularity: ranges fetched concurrently, handed over in order.
DOWNLOAD_CHUNK = 8 * 2**20


def manifest_name(seq):
    """The object name of checkpoint `seq`'s manifest."""
    return checkpoint_name(seq) + MANIFEST_SUFFIX


def parse_manifest_name(name):
    """The seq a manifest object name stands for, or None (canonical names only)."""
    if not name.endswith(MANIFEST_SUFFIX):
        return None
    return parse_checkpoint_name(name[: -len(MANIFEST_SUFFIX)])


def data_prefix_of(name):
    """The `data-<hex>` prefix of one of our data objects, or None."""
    m = _DATA_RE.match(name)
    return m.group(1) if m else None


def is_ours(name):
    """Whether an object name below backup_dir is one the store writes."""
    return (name in CONTROL_NAMES or parse_manifest_name(name) is not None
            or data_prefix_of(name) is not None)


class StoreUnreachable(Exception):
    """Reading failed for another reason than a missing object (network, auth, ...).

    Attributes:
        error: the client's exception.
    """

    def __init__(self, error):
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


def _unreachable(fn):
    """Runs fn(); FileNotFoundError stays, anything else is StoreUnreachable."""
    try:
        return fn()
    except FileNotFoundError:
        raise
    except Exception as e:
        raise StoreUnreachable(e) from e


class ObjectCheckpointFiles:
    """One committed checkpoint's objects, for `verify.inspect`.

    Args:
        client: an objclient client on the backup_dir's prefix.
        where: backup_dir as shown in messages.
        seq: the checkpoint's number.
        committed_crc: the manifest crc32 LATEST committed, or None when
            there is no pointer to check against (LATEST lost).
        workers: concurrent ranged downloads.
    """

    def __init__(self, client, where, seq, committed_crc=None, workers=8,
                 chunk=DOWNLOAD_CHUNK):
        self.client = client
        self.seq = seq
        self.name = manifest_name(seq)
        self.path = f"{where}/{self.name}"
        self.committed_crc = committed_crc
        self.workers = int(workers)
        self.chunk = int(chunk)
        self.objects = None  # the data prefix, once the manifest was checked
        self._sizes = {}
        self._open = []

    def open(self, name):
        if name == MANIFEST_NAME:
            st = _unreachable(lambda: self.client.stat(self.name))
            if st is None:
                raise FileNotFoundError(errno.ENOENT, "no such object", self.name)
            if st[0] > MAX_MANIFEST_BYTES:
                f = _BytesFile(b"", size=st[0])  # verify refuses it unread
            else:
                f = _BytesFile(_unreachable(lambda: self.client.read(self.name))[0])
            self._sizes[name] = f.size
            return f
        if self.objects is None:  # verify checks the manifest first
            raise FileNotFoundError(errno.ENOENT, "the manifest names no objects", name)
        key = f"{self.objects}/{name}"
        st = _unreachable(lambda: self.client.stat(key))
        if st is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", key)
        self._sizes[name] = st[0]
        f = _RangedFile(self.client, key, st[0], self.workers, self.chunk)
        self._open.append(f)
        return f

    def check_manifest(self, manifest):
        """The manifest must be the one LATEST committed, and name its objects."""
        if self.committed_crc is not None and manifest.crc32 != self.committed_crc:
            raise FormatError(
                "checksum mismatch",
                f"{self.name} has crc32 {manifest.crc32!r}, {LATEST_NAME} committed "
                f"{self.committed_crc!r}: it was replaced after the commit")
        objects = manifest.extra.get("objects")
        if not (isinstance(objects, str) and DATA_PREFIX_RE.match(objects)) \
                or manifest.seq != self.seq:
            raise FormatError("manifest unreadable",
                              "not an object-store manifest for this sequence number")
        self.objects = objects

    def size_bytes(self):
        return sum(self._sizes.values())

    def close(self):
        for f in self._open:
            f.close()
        self._open = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class _BytesFile:
    """A small object read whole (the manifest)."""

    def __init__(self, data, size=None):
        self.data = data
        self.size = len(data) if size is None else size
        self.pos = 0

    def read(self, n):
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def at_eof(self):
        return self.pos >= len(self.data)

    def close(self):
        pass


class _RangedFile:
    """Reads one object front to back; ranges are downloaded ahead, in parallel.

    At most `workers` ranges are in flight or waiting to be consumed.
    """

    def __init__(self, client, key, size, workers, chunk):
        self.client = client
        self.key = key
        self.size = size
        self.workers = max(1, workers)
        self.chunk = max(1, chunk)
        self.pos = 0
        self._next = 0  # start of the next range to request
        self._pending = collections.deque()  # (start, end, future)
        self._buffer = memoryview(b"")
        self._pool = None
        self._short = self._long = False

    def _fetch(self, start, end):
        try:
            return self.client.read_range(self.key, start, end)
        except PreconditionFailed as e:  # replaced while being read
            raise FileNotFoundError(errno.ENOENT, str(e), self.key) from e

    def _fill(self):
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="kerasbackup-download")
        while self._next < self.size and len(self._pending) < self.workers:
            end = min(self._next + self.chunk, self.size)
            self._pending.append((self._next, end,
                                  self._pool.submit(self._fetch, self._next, end)))
            self._next = end

    def readinto(self, mv):
        mv = memoryview(mv).cast("B")
        done = 0
        while done < len(mv):
            if not len(self._buffer):
                if self._short:
                    break
                self._fill()
                if not self._pending:
                    break
                start, end, future = self._pending.popleft()
                data = _unreachable(future.result)
                if len(data) < end - start:
                    self._short = True  # verify reports the object truncated
                elif len(data) > end - start:
                    data, self._long = data[: end - start], True
                self._buffer = memoryview(data).cast("B")
            take = min(len(mv) - done, len(self._buffer))
            mv[done:done + take] = self._buffer[:take]
            self._buffer = self._buffer[take:]
            done += take
        self.pos += done
        return done

    def read(self, n):
        buf = bytearray(n)
        got = self.readinto(buf)
        return bytes(buf[:got])

    def at_eof(self):
        # Objects are written once; one replaced while read fails the crc32.
        return self.pos >= self.size and not (self._short or self._long)

    def close(self):
        for _, _, future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
