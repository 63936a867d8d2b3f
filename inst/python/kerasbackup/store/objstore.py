"""Crash-safe checkpoint store on object storage (S3, GCS, memory://).

Object stores cannot rename, so a checkpoint is committed in three steps,
each of which a crash may interrupt without harm:

1. its objects are uploaded under a fresh, unique prefix `data-<hex>/`;
2. its manifest `ckpt-<seq>.json` is created with a conditional create
   (it never replaces anything);
3. the `LATEST` pointer, which lists the committed checkpoints with the
   crc32 of each manifest, is moved by compare-and-swap.

A checkpoint exists only through a manifest that LATEST lists, so partial
uploads and uncommitted manifests are invisible; they are collected later
by the owner. LATEST also names the owner's lease token: a new owner stamps
it when it opens the store, so a writer that lost its lease fails its next
compare-and-swap (BackupLockedError) and cannot publish. Loads verify the
manifest against LATEST, every object's size and crc32 (same manifest and
array-table format as the local store) before returning anything, and
fall back to the older listed checkpoint as the local store does.

Layout under the backup_dir URL:

    .kerasbackup            marker: this prefix belongs to kerasbackup
    .lease                  the writer's lease (see lease.py)
    LATEST                  {"checkpoints": [{seq, manifest_crc32}], "owner", ...}
    ckpt-0000000007.json    manifest of checkpoint 7: the local manifest's
                            fields plus "objects": "data-<hex>"
    data-<hex>/arrays.bin   all arrays' raw bytes, back to back, C order
    data-<hex>/state.json   array table and the caller's meta
"""

import json
import os
import re
import secrets
import socket
import threading
import time
import warnings
import zlib

import numpy as np

from . import compat
from .lease import LEASE_NAME, Lease
from .objclient import (PreconditionFailed, UnsupportedURLError, display_url,
                        is_transient, open_client, scrub)

MARKER_NAME = ".kerasbackup"
LATEST_NAME = "LATEST"
LATEST_FORMAT = "kerasbackup-latest"
_MANIFEST_RE = re.compile(r"^ckpt-(\d{10,})\.json$")
_DATA_RE = re.compile(r"^(data-[0-9a-f]{24})/(arrays\.bin|state\.json|arrays\.bin\.part-\d{5})$")
_OBJECTS_RE = re.compile(r"^data-[0-9a-f]{24}$")
_CONTROL = (MARKER_NAME, LEASE_NAME, LATEST_NAME)
# Download granularity: ranges fetched concurrently, crc'd in file order.
_CHUNK = 8 * 2**20


def manifest_name(seq):
    return f"ckpt-{seq:010d}.json"


def is_ours(name):
    """Whether an object name below backup_dir is one the store writes."""
    return name in _CONTROL or bool(_MANIFEST_RE.match(name) or _DATA_RE.match(name))


def parse_latest(raw):
    """Returns the LATEST dict, or None if it is not a readable pointer."""
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not (isinstance(d, dict) and d.get("format") == LATEST_FORMAT
            and isinstance(d.get("checkpoints"), list)):
        return None
    for e in d["checkpoints"]:
        if not (isinstance(e, dict) and isinstance(e.get("seq"), int)
                and isinstance(e.get("manifest_crc32"), str)):
            return None
    return d


def _latest_body(entries, owner):
    return json.dumps({
        "format": LATEST_FORMAT, "checkpoints": entries, "owner": owner,
        "commit": secrets.token_hex(8), "updated": compat.utc_now(),
    }, sort_keys=True).encode()


def _error_text(e, storage_options):
    return scrub(f"{type(e).__name__}: {e}", storage_options)


class _Checkpoints:
    """Reads, inspects and verifies checkpoints; shared by the store and backup_info."""

    def __init__(self, client, where, workers):
        self.client = client
        self.where = where
        self.workers = workers

    def read_latest(self):
        """Returns (latest dict or None, token, raw bytes or None)."""
        try:
            raw, token = self.client.read(LATEST_NAME)
        except FileNotFoundError:
            return None, None, None
        return parse_latest(raw), token, raw

    def manifests_in(self, names):
        """[(seq, name)] of the manifests among `names`, oldest first."""
        found = []
        for n in names:
            m = _MANIFEST_RE.match(n)
            if m:
                found.append((int(m.group(1)), n))
        return sorted(found)

    def committed(self, names=None):
        """Entries [{seq, manifest_crc32 or None}] that are visible, oldest first.

        LATEST's list; without a readable LATEST (lost or damaged behind our
        back) every manifest present, unchecked against a pointer.
        """
        latest, _, _ = self.read_latest()
        if latest is not None:
            return sorted(latest["checkpoints"], key=lambda e: e["seq"]), True
        if names is None:
            names = self.client.list()
        return [{"seq": s, "manifest_crc32": None}
                for s, _ in self.manifests_in(names)], False

    def inspect(self, entry, mode):
        """Inspects one checkpoint: mode "structure", "verify" or "load".

        Returns (info, problems, loaded) as the local store's inspection.
        Network errors are raised, never reported as damage.
        """
        seq = entry["seq"]
        name = manifest_name(seq)
        path = f"{self.where}/{name}"
        info = {"path": path, "seq": seq, "epoch": None, "batch": None,
                "created": None, "size_bytes": 0, "verified": False, "problem": None}
        problems = []

        def problem(file, kind, detail):
            problems.append({"checkpoint": path, "file": file, "kind": kind,
                             "detail": detail})

        def finish(loaded=None):
            if problems:
                info["verified"] = False
                info["problem"] = "; ".join(compat.format_problem(p) for p in problems)
            return info, problems, loaded

        try:
            raw, _ = self.client.read(name)
        except FileNotFoundError:
            problem(compat.MANIFEST_NAME, "manifest unreadable", f"{name} is missing")
            return finish()
        manifest, bad = compat.parse_manifest(raw)
        if bad:
            problem(compat.MANIFEST_NAME, bad[0], bad[1])
            return finish()
        expected = entry.get("manifest_crc32")
        if expected is not None and manifest.get("manifest_crc32") != expected:
            problem(compat.MANIFEST_NAME, "checksum mismatch",
                    f"{name} has crc32 {manifest.get('manifest_crc32')!r}, LATEST "
                    f"committed {expected!r}: it was replaced after the commit")
            return finish()
        objects = manifest.get("objects")
        if not (isinstance(objects, str) and _OBJECTS_RE.match(objects)) \
                or manifest.get("seq") != seq:
            problem(compat.MANIFEST_NAME, "manifest unreadable",
                    "not an object-store manifest for this sequence number")
            return finish()
        info.update(epoch=manifest.get("epoch"), batch=manifest.get("batch"),
                    created=manifest.get("created"))
        files = manifest["files"]
        info["size_bytes"] = len(raw)
        for fname in (compat.STATE_NAME, compat.ARRAYS_NAME):
            want = files[fname]["size"]
            st = self.client.stat(f"{objects}/{fname}")
            if st is None:
                problem(fname, "missing", f"{objects}/{fname} does not exist")
                continue
            info["size_bytes"] += st[0]
            if st[0] != want:
                kind = "truncated" if st[0] < want else "size mismatch"
                problem(fname, kind, f"manifest says {want} bytes, object has {st[0]}")
        if problems:
            return finish()
        if mode == "structure":
            info["verified"] = None
            return finish()

        try:
            sraw, _ = self.client.read(f"{objects}/{compat.STATE_NAME}")
        except FileNotFoundError:
            problem(compat.STATE_NAME, "missing", "disappeared while being read")
            return finish()
        if not self._crc_ok(problem, compat.STATE_NAME, files, sraw):
            return finish()
        size = files[compat.ARRAYS_NAME]["size"]
        try:
            state = compat.parse_state(sraw, size)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            problem(compat.STATE_NAME, "invalid content", str(e))
            return finish()
        arrays = {}
        try:
            crc = self._read_arrays(f"{objects}/{compat.ARRAYS_NAME}", state, size,
                                    arrays if mode == "load" else None)
        except FileNotFoundError:
            problem(compat.ARRAYS_NAME, "missing", "disappeared while being read")
            return finish()
        except _ShortRead as e:
            problem(compat.ARRAYS_NAME, "truncated", str(e))
            return finish()
        if f"{crc:08x}" != files[compat.ARRAYS_NAME]["crc32"]:
            problem(compat.ARRAYS_NAME, "checksum mismatch",
                    f"manifest says crc32 {files[compat.ARRAYS_NAME]['crc32']}, "
                    f"object hashes to {crc:08x}")
            return finish()
        info["verified"] = True
        if mode == "load":
            return finish((arrays, state.get("meta")))
        return finish()

    @staticmethod
    def _crc_ok(problem, fname, files, data):
        want, got = files[fname], zlib.crc32(data)
        if len(data) != want["size"]:
            problem(fname, "size mismatch", "object changed while being read")
            return False
        if f"{got:08x}" != want["crc32"]:
            problem(fname, "checksum mismatch",
                    f"manifest says crc32 {want['crc32']}, object hashes to {got:08x}")
            return False
        return True

    def _read_arrays(self, name, state, size, arrays):
        """Fetches ranges concurrently, hashes them in order; fills `arrays` if given."""
        tasks = []  # (start, end, destination view or None)
        if arrays is not None:
            for e in state["arrays"]:
                a = np.empty(tuple(e["shape"]), dtype=np.dtype(e["dtype"]))
                arrays[e["name"]] = a
                flat = a.reshape(-1).view(np.uint8)
                for lo in range(0, e["nbytes"], _CHUNK):
                    hi = min(lo + _CHUNK, e["nbytes"])
                    tasks.append((e["offset"] + lo, e["offset"] + hi, flat[lo:hi]))
        else:
            tasks = [(lo, min(lo + _CHUNK, size), None) for lo in range(0, size, _CHUNK)]
        crc = 0
        for (start, end, dest), data in zip(tasks, _ordered(
                lambda t: self.client.read_range(name, t[0], t[1]), tasks, self.workers)):
            if len(data) != end - start:
                raise _ShortRead(f"bytes {start}-{end} came back as {len(data)} bytes")
            crc = zlib.crc32(data, crc)
            if dest is not None:
                dest[:] = np.frombuffer(data, dtype=np.uint8)
        return crc


class _ShortRead(Exception):
    pass


def _ordered(fn, items, workers):
    """fn over items on a pool, results in order, at most 2*workers ahead."""
    import collections
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="kerasbackup-download") as pool:
        window = collections.deque()
        it = iter(items)
        try:
            for item in it:
                window.append(pool.submit(fn, item))
                if len(window) >= 2 * workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for f in window:
                f.cancel()


class ObjectCheckpointStore:
    """Exclusive, crash-safe reader/writer of one object-store backup_dir.

    The same interface as the local CheckpointStore::

        with ObjectCheckpointStore("s3://bucket/run-1", keep=2) as store:
            loaded = store.load()            # None if nothing saved yet
            store.save(arrays, meta, epoch=3, batch=0)

    Args:
        url: `s3://bucket/prefix`, `gs://bucket/prefix` or `memory://...`.
        keep: published checkpoints to retain (1, or 2 for double checkpointing).
        storage_options: fsspec options (credentials, endpoint, ...); they
            are never shown or written.
        lease_ttl: seconds the lease lives without renewal.
        lease_wait: seconds open() watches a live lease held elsewhere
            before raising BackupLockedError (a writer killed on another
            host holds it until it expires; 0 raises at once).
        clock: wall clock for the lease (tests inject one).
        retry: an objclient.RetryPolicy for transient errors.
        part_size, workers: multipart part size and concurrent transfers.
        client: a ready objclient client (tests inject faulty ones).
    """

    def __init__(self, url, keep=1, storage_options=None, lease_ttl=60.0,
                 lease_wait=0.0, clock=time.time, retry=None, part_size=None, workers=8, client=None):
        if int(keep) < 1:
            raise ValueError(f"keep must be >= 1, got {keep!r}")
        self.backup_dir = display_url(url)
        self.keep = int(keep)
        self._options = dict(storage_options or {})
        kw = {"workers": workers}
        if part_size is not None:
            kw["part_size"] = part_size
        try:
            self._client = client or open_client(url, self._options, retry, **kw)
        except UnsupportedURLError as e:
            raise compat.BackupDirError(str(e), self.backup_dir) from None
        self._ckpts = _Checkpoints(self._client, self.backup_dir, int(workers))
        self._lease = Lease(self._client, self.backup_dir, ttl=lease_ttl, clock=clock)
        self._lease_wait = float(lease_wait)
        self._mutex = threading.RLock()
        self._latest = None
        self._latest_token = None
        self._latest_unsure = False  # a commit's answer was lost
        self._max_seq = 0
        self._objects_of = {}  # seq -> data prefix, for checkpoints we know

    def __repr__(self):
        return f"ObjectCheckpointStore({self.backup_dir!r}, keep={self.keep})"

    # ------------------------------------------------------------ open/close

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def is_open(self):
        """Whether this object holds backup_dir's lease."""
        return self._lease.held

    @property
    def lease(self):
        """The lease.Lease of this store (its token, holder and renewals)."""
        return self._lease

    def open(self):
        """Takes the lease, stamps LATEST with it and collects leftovers.

        Raises BackupDirError if the prefix holds objects kerasbackup did not
        write (and no marker) or cannot be reached, BackupLockedError if
        another live writer holds the lease. Warns StaleLockWarning on
        taking over an expired lease. Idempotent; returns self.
        """
        with self._mutex:
            if self._lease.held:
                return self
            try:
                names = self._client.list()
                self._check_prefix(names)
                self._lease.acquire(wait=self._lease_wait)
                try:
                    if MARKER_NAME not in names:
                        try:
                            self._client.create(MARKER_NAME, json.dumps(
                                {"kerasbackup": True, "format_version": compat.FORMAT_VERSION,
                                 "created": compat.utc_now()}).encode())
                        except PreconditionFailed:
                            pass
                    self._stamp_latest(names)
                    self.collect()
                except BaseException:
                    self._lease.release()
                    raise
            except (compat.BackupError, compat.SaveCancelled):
                raise
            except Exception as e:
                raise compat.BackupDirError(
                    f"cannot use backup_dir '{self.backup_dir}': "
                    f"{_error_text(e, self._options)}", self.backup_dir, e) from None
            return self

    def close(self):
        """Releases the lease (idempotent). The checkpoints stay."""
        with self._mutex:
            self._lease.release()

    def _check_prefix(self, names):
        foreign = sorted(n for n in names if n not in (LEASE_NAME, LATEST_NAME))
        if MARKER_NAME not in names and foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise compat.BackupDirError(
                f"backup_dir '{self.backup_dir}' is not empty and was not created by "
                f"kerasbackup (no {MARKER_NAME} marker; it contains {shown}). "
                "Refusing to write into it: choose a new or empty prefix.",
                self.backup_dir)

    def _stamp_latest(self, names):
        """Writes our lease token into LATEST (fencing out any older writer)."""
        self._max_seq = max([s for s, _ in self._ckpts.manifests_in(names)] + [self._max_seq])
        for _ in range(10):
            latest, token, raw = self._ckpts.read_latest()
            if latest is None:
                entries, _ = self._ckpts.committed(names)
                if raw is not None and entries:
                    warnings.warn(
                        f"backup_dir '{self.backup_dir}': {LATEST_NAME} is unreadable; "
                        "rebuilt it from the manifests present.",
                        compat.CheckpointFallbackWarning, stacklevel=4)
                entries = [self._rebuilt_entry(e["seq"]) for e in entries]
                entries = [e for e in entries if e is not None]
            else:
                entries = sorted(latest["checkpoints"], key=lambda e: e["seq"])
            body = _latest_body(entries, self._lease.token)
            try:
                if token is None:
                    self._latest_token = self._client.create(LATEST_NAME, body)
                else:
                    self._latest_token = self._client.replace(LATEST_NAME, body, token)
            except PreconditionFailed:
                continue
            self._latest = json.loads(body)
            self._max_seq = max([e["seq"] for e in entries] + [self._max_seq])
            return
        raise compat.BackupLockedError(
            f"backup_dir '{self.backup_dir}': {LATEST_NAME} keeps changing under "
            "us; another writer is active.", self.backup_dir, {})

    def _rebuilt_entry(self, seq):
        try:
            raw, _ = self._client.read(manifest_name(seq))
        except FileNotFoundError:
            return None
        manifest, bad = compat.parse_manifest(raw)
        return None if bad else {"seq": seq, "manifest_crc32": manifest["manifest_crc32"]}

    def _ensure_open(self):
        if not self._lease.held:
            self.open()
        if self._latest_unsure:
            current, token = self._read_own_latest("")
            self._latest, self._latest_token = current, token
            self._latest_unsure = False

    # ------------------------------------------------------------------ save

    def save(self, arrays, meta, epoch, batch, cancel=None):
        """Uploads and commits a new checkpoint; returns its info dict.

        As the local store: on failure raises BackupWriteError naming
        backup_dir and the error, and the previous checkpoints stay; a
        lost lease raises BackupLockedError; `cancel` (a threading.Event)
        set before the commit raises SaveCancelled and changes nothing
        visible. Arrays must not change until save() returns.
        """
        entries, buffers, total = compat.prepare_arrays(arrays)
        state_bytes = json.dumps(
            {"format_version": compat.FORMAT_VERSION, "arrays": entries, "meta": meta},
            default=compat.json_default).encode("utf-8")
        epoch = None if epoch is None else int(epoch)
        batch = None if batch is None else int(batch)

        with self._mutex:
            self._ensure_open()
            d = self.backup_dir
            objects = f"data-{secrets.token_hex(12)}"
            written = []  # our new objects, removed if the save fails
            committing = False
            try:
                self._lease.check()
                compat.phase("staging", backup_dir=d, path=f"{d}/{objects}")
                crc = 0
                for b in buffers:
                    crc = zlib.crc32(b, crc)
                aname = f"{objects}/{compat.ARRAYS_NAME}"
                written.append(aname)
                self._client.upload(
                    aname, buffers, total,
                    on_part=lambda k, n, done: compat.phase(
                        "part_uploaded", backup_dir=d, path=f"{d}/{aname}", part=k,
                        parts=n, written=done, total=total))
                compat.phase("arrays_written", backup_dir=d, path=f"{d}/{aname}")
                sname = f"{objects}/{compat.STATE_NAME}"
                written.append(sname)
                self._client.create(sname, state_bytes)
                files = {compat.ARRAYS_NAME: {"size": total, "crc32": f"{crc:08x}"},
                         compat.STATE_NAME: {"size": len(state_bytes),
                                             "crc32": f"{zlib.crc32(state_bytes):08x}"}}
                seq, mcrc, msize, created = self._create_manifest(
                    objects, files, epoch, batch, cancel, written)
                compat.phase("manifest_written", backup_dir=d,
                             path=f"{d}/{manifest_name(seq)}")
                if cancel is not None and cancel.is_set():
                    raise compat.SaveCancelled(f"save to '{d}' was cancelled")
                committing = True
                self._commit(seq, mcrc)
            except compat.SaveCancelled:
                self._remove(written)
                raise
            except compat.BackupLockedError:
                if not committing:
                    self._remove(written)
                raise
            except Exception as e:
                # A commit whose answer was lost may have succeeded: its
                # objects stay for collect() to judge against LATEST.
                if committing:
                    self._latest_unsure = True
                else:
                    self._remove(written)
                raise compat.BackupWriteError(
                    f"could not write a checkpoint to backup_dir '{d}': "
                    f"{_error_text(e, self._options)}. The previous checkpoint, if "
                    "any, is unchanged.", d, e if isinstance(e, OSError) else None) from None
            self._objects_of[seq] = objects
            compat.phase("published", backup_dir=d, path=f"{d}/{manifest_name(seq)}")
            try:
                self.collect()
            except Exception as e:
                warnings.warn(f"backup_dir '{d}': could not remove an old checkpoint: "
                              f"{_error_text(e, self._options)}", RuntimeWarning,
                              stacklevel=2)
            compat.phase("pruned", backup_dir=d, path=f"{d}/{manifest_name(seq)}")
            return {"path": f"{d}/{manifest_name(seq)}", "seq": seq, "epoch": epoch,
                    "batch": batch, "created": created,
                    "size_bytes": total + len(state_bytes) + msize,
                    "verified": True, "problem": None}

    def _create_manifest(self, objects, files, epoch, batch, cancel, written):
        for _ in range(10):
            seq = max([e["seq"] for e in self._latest["checkpoints"]] + [self._max_seq]) + 1
            created = compat.utc_now()
            manifest = {
                "format": compat.MANIFEST_FORMAT, "format_version": compat.FORMAT_VERSION,
                "seq": seq, "created": created, "epoch": epoch, "batch": batch,
                "files": files, "objects": objects,
                "writer": {"pid": os.getpid(), "host": socket.gethostname()},
            }
            manifest["manifest_crc32"] = compat.manifest_crc(manifest)
            raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
            if cancel is not None and cancel.is_set():
                raise compat.SaveCancelled(f"save to '{self.backup_dir}' was cancelled")
            self._lease.check()
            self._max_seq = seq
            try:
                self._client.create(manifest_name(seq), raw)
            except PreconditionFailed:
                # Ours if an earlier try's answer was lost, else a stray one.
                try:
                    if self._client.read(manifest_name(seq))[0] != raw:
                        continue
                except FileNotFoundError:
                    continue
            written.append(manifest_name(seq))
            return seq, manifest["manifest_crc32"], len(raw), created
        raise compat.BackupWriteError(
            f"backup_dir '{self.backup_dir}': no free checkpoint number after "
            f"{self._max_seq}", self.backup_dir)

    def _commit(self, seq, mcrc):
        """Moves LATEST by compare-and-swap to list the new checkpoint."""
        for _ in range(10):
            entries = sorted(self._latest["checkpoints"], key=lambda e: e["seq"])
            entries = (entries + [{"seq": seq, "manifest_crc32": mcrc}])[-self.keep:]
            body = _latest_body(entries, self._lease.token)
            try:
                self._latest_token = self._client.replace(LATEST_NAME, body,
                                                          self._latest_token)
                self._latest = json.loads(body)
                return
            except PreconditionFailed:
                current, token = self._read_own_latest(" and did not publish")
            # Still ours: an earlier commit's answer was lost. Catch up.
            self._latest, self._latest_token = current, token
            if any(e["seq"] == seq and e["manifest_crc32"] == mcrc
                   for e in current["checkpoints"]):
                return
        raise compat.BackupWriteError(
            f"backup_dir '{self.backup_dir}': {LATEST_NAME} could not be moved",
            self.backup_dir)

    def _remove(self, names):
        for n in names:
            try:
                self._client.delete(n)
            except Exception:
                pass  # the owner's next collect() removes it

    # ------------------------------------------------------------ collection

    def collect(self):
        """Removes our objects that no committed checkpoint needs; returns how many.

        Uncommitted or pruned manifests, data prefixes no listed manifest
        names, and unfinished multipart uploads. Only names the store writes
        are touched. Needs the lease (no in-flight save of ours exists then).
        """
        with self._mutex:
            self._lease.check()
            names = self._client.list()
            listed = {e["seq"] for e in self._latest["checkpoints"]}
            keep_objects = set()
            for seq in listed:
                objects = self._objects_of.get(seq)
                if objects is None:
                    try:
                        raw, _ = self._client.read(manifest_name(seq))
                        objects = json.loads(raw.decode("utf-8")).get("objects")
                    except FileNotFoundError:
                        continue
                    except (ValueError, UnicodeDecodeError, AttributeError):
                        objects = None
                    if not isinstance(objects, str):
                        keep_objects = None  # unknown: delete no data this time
                        break
                    self._objects_of[seq] = objects
                keep_objects.add(objects)
            doomed = [n for s, n in self._ckpts.manifests_in(names) if s not in listed]
            if keep_objects is not None:
                doomed += [n for n in names
                           if _DATA_RE.match(n) and _DATA_RE.match(n).group(1) not in keep_objects]
                self._client.abort_uploads(
                    lambda n: bool(_DATA_RE.match(n))
                    and _DATA_RE.match(n).group(1) in keep_objects)
            for n in doomed:
                self._client.delete(n)
            for seq in list(self._objects_of):
                if seq not in listed:
                    del self._objects_of[seq]
            return len(doomed)

    # ------------------------------------------------------------------ load

    def load(self, required=False):
        """Returns `(arrays, meta, info)` of the newest checkpoint that verifies.

        As the local store: falls back to an older committed checkpoint with
        a CheckpointFallbackWarning, raises CorruptCheckpointError if none
        verifies, returns None (or raises NoCheckpointError if `required`)
        when there is none. Network errors raise BackupDirError rather than
        falling back.
        """
        with self._mutex:
            self._ensure_open()
            d = self.backup_dir
            failed = []
            try:
                for entry in sorted(self._latest["checkpoints"], key=lambda e: e["seq"],
                                    reverse=True):
                    info, problems, loaded = self._ckpts.inspect(entry, "load")
                    if problems:
                        failed.extend(problems)
                        continue
                    if failed:
                        why = "; ".join(f"'{p['checkpoint']}' {compat.format_problem(p)}"
                                        for p in failed)
                        warnings.warn(
                            f"backup_dir '{d}': newer checkpoint failed verification "
                            f"({why}); loaded the older checkpoint '{info['path']}' "
                            f"(epoch {info['epoch']}, batch {info['batch']}) instead. "
                            "The failed checkpoint was left in place.",
                            compat.CheckpointFallbackWarning, stacklevel=2)
                    arrays, meta = loaded
                    return arrays, meta, info
            except Exception as e:
                raise compat.BackupDirError(
                    f"cannot read backup_dir '{d}': {_error_text(e, self._options)}",
                    d, e if isinstance(e, OSError) else None) from None
            if failed:
                why = "; ".join(f"checkpoint '{p['checkpoint']}': "
                                f"{compat.format_problem(p)}" for p in failed)
                raise compat.CorruptCheckpointError(
                    f"no checkpoint in backup_dir '{d}' passed verification: "
                    f"{why}. The objects were left in place for inspection.", d, failed)
            if required:
                raise compat.NoCheckpointError(f"backup_dir '{d}' contains no checkpoint", d)
            return None

    # ------------------------------------------------------------ inspection

    def checkpoints(self, verify=True):
        """Lists the committed checkpoints, oldest first, as info dicts (no lease)."""
        return _info(self._ckpts, verify, self._options)

    @property
    def latest(self):
        """Info dict of the newest checkpoint (checksums not re-read), or None."""
        found = self.checkpoints(verify=False)
        return found[-1] if found else None

    # ---------------------------------------------------------------- delete

    def delete(self):
        """Removes every object the store wrote; others' objects stay.

        Takes the lease first (so it refuses a backup_dir in use), empties
        LATEST (nothing is visible from then on), removes checkpoints and
        leftovers, then the marker, LATEST and the lease. The store is
        closed afterwards. An empty prefix is a no-op.
        """
        with self._mutex:
            d = self.backup_dir
            try:
                if not self._lease.held and not self._client.list():
                    return
            except Exception as e:
                raise compat.BackupWriteError(
                    f"could not delete backup_dir '{d}': {_error_text(e, self._options)}",
                    d, None) from None
            self.open()
            try:
                compat.phase("deleting", backup_dir=d, path=d)
                self._latest["checkpoints"] = []
                self._commit_empty()
                names = self._client.list()
                self._client.abort_uploads(lambda n: False)
                # Manifests first: a checkpoint never lacks data it names.
                for n in sorted(names, key=lambda n: not _MANIFEST_RE.match(n)):
                    if is_ours(n) and n not in _CONTROL:
                        self._client.delete(n)
                for n in (MARKER_NAME, LATEST_NAME):
                    self._client.delete(n)
            except compat.BackupError:
                self._lease.release()
                raise
            except Exception as e:
                self._lease.release()
                raise compat.BackupWriteError(
                    f"could not delete backup_dir '{d}': {_error_text(e, self._options)}",
                    d, e if isinstance(e, OSError) else None) from None
            self._lease.release()
            self._objects_of.clear()
            compat.phase("deleted", backup_dir=d, path=d)

    def _commit_empty(self):
        body = _latest_body([], self._lease.token)
        try:
            self._latest_token = self._client.replace(LATEST_NAME, body, self._latest_token)
        except PreconditionFailed:
            self._read_own_latest("; nothing was deleted")
            raise

    def _read_own_latest(self, outcome):
        """Re-reads LATEST; raises BackupLockedError unless it still names our lease."""
        current, token, _ = self._ckpts.read_latest()
        if current is None or current.get("owner") != self._lease.token:
            raise compat.BackupLockedError(
                f"backup_dir '{self.backup_dir}': {LATEST_NAME} was taken over by "
                f"another writer; this process no longer owns the backup_dir{outcome}.",
                self.backup_dir, {})
        return current, token


def _info(ckpts, verify, options):
    d = ckpts.where
    try:
        entries, _ = ckpts.committed()
        result = []
        for entry in entries:
            info, problems, _ = ckpts.inspect(entry, "verify" if verify else "structure")
            if problems and problems[0]["kind"] == "manifest unreadable" \
                    and "is missing" in problems[0]["detail"]:
                still, _ = ckpts.committed()
                if all(e["seq"] != entry["seq"] for e in still):
                    continue  # pruned by the writer while we looked
            result.append(info)
        return result
    except Exception as e:
        raise compat.BackupDirError(
            f"cannot read backup_dir '{d}': {_error_text(e, options)}", d,
            e if isinstance(e, OSError) else None) from None


def backup_info(url, verify=True, storage_options=None, retry=None):
    """Lists the committed checkpoints under `url`, oldest first, without the lease.

    Safe while another process writes. Returns [] where nothing was saved.
    See the local store's CheckpointStore.checkpoints() for the dict keys.
    """
    options = dict(storage_options or {})
    where = display_url(url)
    try:
        client = open_client(url, options, retry)
    except UnsupportedURLError as e:
        raise compat.BackupDirError(str(e), where) from None
    return _info(_Checkpoints(client, where, 8), verify, options)


__all__ = ["ObjectCheckpointStore", "backup_info", "is_ours", "manifest_name",
           "parse_latest", "is_transient"]
