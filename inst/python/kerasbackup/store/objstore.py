"""Crash-safe checkpoint store on object storage (S3, GCS, memory://).

Object stores cannot rename, so a checkpoint is committed in three steps,
each of which a crash may interrupt without harm:

1. its objects are uploaded under a fresh, unique prefix `data-<hex>/`
   (arrays.bin in parallel parts);
2. its manifest `ckpt-<seq>.json` is created with a conditional create
   (it never replaces anything);
3. the `LATEST` pointer, which lists the committed checkpoints with the
   crc32 of each manifest, is moved by compare-and-swap.

A checkpoint exists only through a manifest that LATEST lists, so partial
uploads and uncommitted manifests are invisible; the owner collects them
later. LATEST also names the owner's lease token: a new owner stamps it
when it opens the store, so a writer that lost its lease fails its next
compare-and-swap (BackupLockedError) and cannot publish.

The checkpoint format (manifest, array table, arrays) is the local
store's (`format`); loads verify and fall back with the same code
(`verify`, reading through `objfiles`). The layout is described in
`objfiles`; the lease in `lease`.
"""

import json
import os
import secrets
import socket
import threading
import time

from kerasbackup import errors
from kerasbackup.errors import (
    BackupDirError, BackupError, BackupLockedError, BackupWriteError,
    CheckpointFallbackWarning, NoCheckpointError, SaveCancelled)
from kerasbackup.store.base import Store
from kerasbackup.store.fileio import THREAD_MIN, Crc32, chunks
from kerasbackup.store.format import (
    ARRAYS_NAME, FORMAT_VERSION, MARKER_NAME, STATE_NAME, FormatError, Inspection,
    build_manifest, parse_manifest, prepare_save, utc_now, write_failure_text)
from kerasbackup.store.lease import LEASE_NAME, Lease
from kerasbackup.store.objclient import (
    PreconditionFailed, UnsupportedURLError, display_url, open_client, scrub)
from kerasbackup.store.objfiles import (
    CONTROL_NAMES, LATEST_NAME, ObjectCheckpointFiles, StoreUnreachable,
    data_prefix_of, is_ours, manifest_name, parse_manifest_name)
from kerasbackup.store.phases import phase
from kerasbackup.store.verify import LOAD, STRUCTURE, VERIFY, inspect, load_newest

LATEST_FORMAT = "kerasbackup-latest"
DEFAULT_LEASE_TTL = 60.0


def parse_latest(raw):
    """Returns the LATEST dict, or None if `raw` is not a readable pointer."""
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not (isinstance(d, dict) and d.get("format") == LATEST_FORMAT
            and isinstance(d.get("checkpoints"), list)):
        return None
    for e in d["checkpoints"]:
        if not (isinstance(e, dict) and isinstance(e.get("seq"), int)
                and not isinstance(e.get("seq"), bool)
                and isinstance(e.get("manifest_crc32"), str)):
            return None
    return d


def _latest_body(entries, owner):
    return json.dumps({
        "format": LATEST_FORMAT, "checkpoints": entries, "owner": owner,
        "commit": secrets.token_hex(8), "updated": utc_now(),
    }, sort_keys=True).encode()


def _error_text(e, storage_options):
    if isinstance(e, StoreUnreachable):
        e = e.error
    return scrub(f"{type(e).__name__}: {e}", storage_options)


def _os_error(e):
    e = e.error if isinstance(e, StoreUnreachable) else e
    return e if isinstance(e, OSError) else None


def _dir_error(where, e, options, doing="read"):
    """BackupDirError for a store that could not be used (credentials scrubbed)."""
    return BackupDirError(f"cannot {doing} backup_dir '{where}': {_error_text(e, options)}",
                          where, _os_error(e))


class _Checkpoints:
    """Finds and inspects committed checkpoints; shared by the store and backup_info."""

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

    @staticmethod
    def manifests_in(names):
        """[(seq, name)] of the manifests among `names`, oldest first."""
        return sorted((s, n) for n in names
                      for s in [parse_manifest_name(n)] if s is not None)

    def committed(self, names=None):
        """Entries [{seq, manifest_crc32 or None}] that are visible, oldest first.

        LATEST's list; without a readable LATEST (lost or damaged behind our
        back) every manifest present, unchecked against a pointer.
        """
        latest, _, _ = self.read_latest()
        if latest is not None:
            return sorted(latest["checkpoints"], key=lambda e: e["seq"])
        if names is None:
            names = self.client.list()
        return [{"seq": s, "manifest_crc32": None} for s, _ in self.manifests_in(names)]

    def inspect(self, entry, mode):
        """Inspects one checkpoint with the shared verifier; returns an Inspection.

        Damage is reported in the Inspection; an unreachable store raises
        StoreUnreachable.
        """
        with ObjectCheckpointFiles(self.client, self.where, entry["seq"],
                                   entry.get("manifest_crc32"), self.workers) as files:
            return inspect(files, entry["seq"], mode)


class ObjectCheckpointStore(Store):
    """Exclusive, crash-safe reader/writer of one object-store backup_dir.

    The same interface as the local CheckpointStore::

        with ObjectCheckpointStore("s3://bucket/run-1", keep=2) as store:
            loaded = store.load()            # None if nothing saved yet
            store.save(arrays, meta, epoch=3, batch=0)

    Args:
        url: `s3://bucket/prefix`, `gs://bucket/prefix` or `memory://...`.
        keep: published checkpoints to retain (1, or 2 for double checkpointing).
        storage_options: fsspec options (credentials, endpoint, ...); they
            are never shown, logged or written.
        lease_ttl: seconds the lease lives without renewal.
        lease_wait: seconds open() watches a live lease held elsewhere
            before raising BackupLockedError (a writer killed on another
            host holds it until it expires; 0 raises at once).
        clock: wall clock for the lease (tests inject one).
        retry: an objclient.RetryPolicy for transient errors.
        part_size, workers: multipart part size and concurrent transfers.
        client: a ready objclient client (tests inject faulty ones).
    """

    def __init__(self, url, keep=1, storage_options=None, lease_ttl=DEFAULT_LEASE_TTL,
                 lease_wait=0.0, clock=time.time, retry=None, part_size=None,
                 workers=8, client=None):
        if int(keep) < 1:
            raise ValueError(f"keep must be >= 1, got {keep!r}")
        if not float(lease_wait) >= 0:
            raise ValueError(f"lease_wait must be >= 0 seconds, got {lease_wait!r}")
        self.backup_dir = display_url(url)
        self.keep = int(keep)
        self._options = dict(storage_options or {})
        kw = {"workers": workers}
        if part_size is not None:
            kw["part_size"] = part_size
        try:
            self._client = client or open_client(url, self._options, retry, **kw)
        except UnsupportedURLError as e:
            raise BackupDirError(str(e), self.backup_dir) from None
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
        another live writer holds the lease (after watching it for
        `lease_wait` seconds). Warns StaleLockWarning on taking over an
        expired lease. Idempotent; returns self.
        """
        with self._mutex:
            if self._lease.held:
                return self
            lost = self._lease.lost
            if lost is not None:
                raise lost  # until close(): another process owns backup_dir now
            try:
                names = self._client.list()
                self._check_prefix(names)
                self._lease.acquire(wait=self._lease_wait)
                try:
                    if MARKER_NAME not in names:
                        try:
                            self._client.create(MARKER_NAME, json.dumps(
                                {"kerasbackup": True, "format_version": FORMAT_VERSION,
                                 "created": utc_now()}).encode())
                        except PreconditionFailed:
                            pass
                    self._stamp_latest(names)
                    self.collect()
                except BaseException:
                    self._lease.release()
                    raise
            except (BackupError, SaveCancelled):
                raise
            except Exception as e:
                raise _dir_error(self.backup_dir, e, self._options, "use") from None
            return self

    def close(self):
        """Releases the lease (idempotent). The checkpoints stay."""
        with self._mutex:
            self._lease.release()

    def _check_prefix(self, names):
        foreign = sorted(n for n in names if n not in (LEASE_NAME, LATEST_NAME))
        if MARKER_NAME not in names and foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise BackupDirError(
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
                entries = self._ckpts.committed(names)
                if raw is not None and entries:
                    errors.warn(
                        f"backup_dir '{self.backup_dir}': {LATEST_NAME} is unreadable; "
                        "rebuilt it from the manifests present.",
                        CheckpointFallbackWarning, stacklevel=4)
                entries = [e for e in map(self._rebuilt_entry, entries) if e is not None]
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
        raise BackupLockedError(
            f"backup_dir '{self.backup_dir}': {LATEST_NAME} keeps changing under "
            "us; another writer is active.", self.backup_dir, {})

    def _read_manifest(self, seq):
        """The parsed manifest of `seq`, or None if it is missing or malformed."""
        try:
            raw, _ = self._client.read(manifest_name(seq))
            m = parse_manifest(raw)
        except (FileNotFoundError, FormatError):
            return None
        return m if m.seq == seq else None

    def _rebuilt_entry(self, entry):
        m = self._read_manifest(entry["seq"])
        return None if m is None else {"seq": m.seq, "manifest_crc32": m.crc32}

    def _ensure_open(self):
        if not self._lease.held:
            self.open()
        if self._latest_unsure:  # a commit's answer was lost: where are we?
            try:
                current, token = self._read_own_latest("")
            except BackupError:
                raise
            except Exception as e:
                raise _dir_error(self.backup_dir, e, self._options) from None
            self._latest, self._latest_token = current, token
            self._latest_unsure = False

    # ------------------------------------------------------------------ save

    def save(self, arrays, meta, epoch, batch, cancel=None, checksums=None):
        """Uploads and commits a new checkpoint; returns its info dict.

        As the local store: on failure raises BackupWriteError naming
        backup_dir and the error, and the previous checkpoints stay; a
        lost lease raises BackupLockedError; `cancel` (a threading.Event)
        set before the commit raises SaveCancelled and changes nothing
        visible; `checksums` spares reading the arrays it names again.
        Arrays must not change until save() returns.
        """
        buffers, total, known_crc, state_bytes, epoch, batch = prepare_save(
            arrays, meta, epoch, batch, checksums)

        with self._mutex:
            self._ensure_open()
            d = self.backup_dir
            objects = f"data-{secrets.token_hex(12)}"
            written = []  # our new objects, removed if the save fails
            committing = False
            try:
                self._lease.check()
                phase("staging", backup_dir=d, path=f"{d}/{objects}")
                aname = f"{objects}/{ARRAYS_NAME}"
                written.append(aname)
                # The checksum (unless known) runs on a helper thread while
                # the parts upload.
                crc = Crc32(threaded=known_crc is None and total >= THREAD_MIN)
                try:
                    for buf in buffers if known_crc is None else ():
                        for chunk in chunks(buf):
                            crc.feed(chunk)
                    self._client.upload(
                        aname, buffers, total,
                        on_part=lambda k, n, done: phase(
                            "part_uploaded", backup_dir=d, path=f"{d}/{aname}", part=k,
                            parts=n, written=done, total=total))
                finally:
                    arrays_crc = crc.result() if known_crc is None else known_crc
                phase("arrays_written", backup_dir=d, path=f"{d}/{aname}")
                sname = f"{objects}/{STATE_NAME}"
                written.append(sname)
                self._client.create(sname, state_bytes)
                state_crc = Crc32(threaded=False)
                state_crc.feed(state_bytes)
                files = {ARRAYS_NAME: (total, arrays_crc),
                         STATE_NAME: (len(state_bytes), state_crc.result())}
                seq, mcrc, msize, created = self._create_manifest(
                    objects, files, epoch, batch, cancel, written)
                phase("manifest_written", backup_dir=d, path=f"{d}/{manifest_name(seq)}")
                if cancel is not None and cancel.is_set():
                    raise SaveCancelled(f"save to '{d}' was cancelled")
                committing = True
                self._commit(seq, mcrc)
            except SaveCancelled:
                self._remove(written)
                raise
            except BackupLockedError:
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
                raise BackupWriteError(
                    write_failure_text(d, epoch, batch, _error_text(e, self._options)),
                    d, _os_error(e)) from None
            self._objects_of[seq] = objects
            path = f"{d}/{manifest_name(seq)}"
            phase("published", backup_dir=d, path=path)
            try:
                self.collect()
            except Exception as e:
                errors.warn(f"backup_dir '{d}': could not remove an old checkpoint: "
                              f"{_error_text(e, self._options)}", RuntimeWarning,
                              stacklevel=2)
            phase("pruned", backup_dir=d, path=path)
            return Inspection(path=path, seq=seq, epoch=epoch, batch=batch,
                              created=created,
                              size_bytes=total + len(state_bytes) + msize,
                              verified=True).info()

    def _create_manifest(self, objects, files, epoch, batch, cancel, written):
        for _ in range(10):
            seq = max([e["seq"] for e in self._latest["checkpoints"]] + [self._max_seq]) + 1
            raw, created, crc = build_manifest(
                seq, epoch, batch, files,
                writer={"pid": os.getpid(), "host": socket.gethostname()},
                extra={"objects": objects})
            if cancel is not None and cancel.is_set():
                raise SaveCancelled(f"save to '{self.backup_dir}' was cancelled")
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
            return seq, crc, len(raw), created
        raise BackupWriteError(
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
        raise BackupWriteError(
            f"backup_dir '{self.backup_dir}': {LATEST_NAME} could not be moved",
            self.backup_dir)

    def _remove(self, names):
        """Deletes a failed save's objects, best effort.

        Stops at the first failure (the store is likely unreachable, and
        each try costs its retries): the owner's next collect() removes the
        rest.
        """
        for n in names:
            try:
                self._client.delete(n)
            except Exception:
                return

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
            if any(seq not in self._objects_of and manifest_name(seq) not in names
                   for seq in listed):
                # LATEST names a checkpoint that is not there: a correct writer
                # never leaves that, so LATEST was damaged or edited. What it
                # does not list may be all that is left: delete nothing.
                return 0
            for seq in listed:
                objects = self._objects_of.get(seq)
                if objects is None:
                    m = self._read_manifest(seq)
                    objects = None if m is None else m.extra.get("objects")
                    if not isinstance(objects, str):
                        keep_objects = None  # unknown: delete no data this time
                        break
                    self._objects_of[seq] = objects
                keep_objects.add(objects)
            doomed = [n for s, n in self._ckpts.manifests_in(names) if s not in listed]
            if keep_objects is not None:
                doomed += [n for n in names if data_prefix_of(n) not in (None, *keep_objects)]
                # Only our own uploads: a name we do not write stays.
                self._client.abort_uploads(
                    lambda n: data_prefix_of(n) in (None, *keep_objects))
            for n in doomed:
                self._client.delete(n)
            for seq in list(self._objects_of):
                if seq not in listed:
                    del self._objects_of[seq]
            return len(doomed)

    # ------------------------------------------------------------------ load

    def load(self, required=False, accept=None):
        """Returns `(arrays, meta, info)` of the newest checkpoint that verifies.

        As the local store (`accept`, fallback with CheckpointFallbackWarning,
        CorruptCheckpointError, NoCheckpointError; see verify.load_newest),
        over the checkpoints LATEST lists. A store that cannot be reached
        raises BackupDirError rather than falling back.
        """
        with self._mutex:
            self._ensure_open()
            entries = sorted(self._latest["checkpoints"], key=lambda e: e["seq"],
                             reverse=True)
            return load_newest((self._inspect(e, LOAD) for e in entries),
                               self.backup_dir, required, accept)

    def _inspect(self, entry, mode):
        try:
            return self._ckpts.inspect(entry, mode)
        except StoreUnreachable as e:
            raise _dir_error(self.backup_dir, e, self._options) from None

    # ------------------------------------------------------------ inspection

    def checkpoints(self, verify=True):
        """Lists the committed checkpoints, oldest first, as info dicts (no lease)."""
        return _info(self._ckpts, verify, self._options)

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
                raise BackupWriteError(
                    f"could not delete backup_dir '{d}': {_error_text(e, self._options)}",
                    d, None) from None
            self.open()
            try:
                phase("deleting", backup_dir=d, path=d)
                self._latest["checkpoints"] = []
                self._commit_empty()
                names = self._client.list()
                self._client.abort_uploads(lambda n: data_prefix_of(n) is None)
                # Manifests first: a checkpoint never lacks data it names.
                for n in sorted(names, key=lambda n: parse_manifest_name(n) is None):
                    if is_ours(n) and n not in CONTROL_NAMES:
                        self._client.delete(n)
                for n in (MARKER_NAME, LATEST_NAME):
                    self._client.delete(n)
            except BackupError:
                self._lease.release()
                raise
            except Exception as e:
                self._lease.release()
                raise BackupWriteError(
                    f"could not delete backup_dir '{d}': {_error_text(e, self._options)}",
                    d, _os_error(e)) from None
            self._lease.release()
            self._objects_of.clear()
            phase("deleted", backup_dir=d, path=d)

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
            raise BackupLockedError(
                f"backup_dir '{self.backup_dir}': {LATEST_NAME} was taken over by "
                f"another writer; this process no longer owns the backup_dir{outcome}.",
                self.backup_dir, {})
        return current, token


def _info(ckpts, verify, options):
    d = ckpts.where
    mode = VERIFY if verify else STRUCTURE
    try:
        result = []
        for entry in ckpts.committed():
            ins = ckpts.inspect(entry, mode)
            if ins.problems and ins.problems[0].kind == "manifest unreadable" \
                    and "is missing" in ins.problems[0].detail \
                    and all(e["seq"] != entry["seq"] for e in ckpts.committed()):
                continue  # pruned by the writer while we looked
            result.append(ins.info())
        return result
    except Exception as e:
        raise _dir_error(d, e, options) from None


def backup_info(url, verify=True, storage_options=None, retry=None):
    """Lists the committed checkpoints under `url`, oldest first, without the lease.

    Safe while another process writes. Returns [] where nothing was saved.
    See the local store's CheckpointStore.checkpoints() for the dict keys.
    """
    ckpts, options = _reader(url, storage_options, retry)
    return _info(ckpts, verify, options)


def _reader(url, storage_options, retry):
    """(_Checkpoints, options) for reading `url` without the lease."""
    options = dict(storage_options or {})
    where = display_url(url)
    try:
        client = open_client(url, options, retry)
    except UnsupportedURLError as e:
        raise BackupDirError(str(e), where) from None
    return _Checkpoints(client, where, 8), options


def load_published(url, seq, accept=None, storage_options=None, retry=None):
    """Loads committed checkpoint `seq` under `url` without the lease, writing nothing.

    The object-store side of store.load_published(), for the workers of a
    distributed fit(). Verified against LATEST's record of its manifest where
    LATEST lists it. Raises NoCheckpointError where `seq` is not committed.
    """
    ckpts, options = _reader(url, storage_options, retry)
    where = ckpts.where
    try:
        entry = next((e for e in ckpts.committed() if e["seq"] == int(seq)), None)
        ins = None if entry is None else ckpts.inspect(entry, LOAD)
    except Exception as e:
        raise _dir_error(where, e, options) from None
    if ins is None:
        raise NoCheckpointError(f"backup_dir '{where}' holds no committed checkpoint {seq}",
                                where)
    return load_newest([ins], where, required=True, accept=accept)
