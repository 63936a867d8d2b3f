"""The checkpoint format: names, manifest, array table, inspection result.

Pure functions over bytes and dicts (no file I/O), shared by every back end.
A checkpoint is three files:

    arrays.bin     all arrays' raw bytes, back to back, C order
    state.json     {"format_version", "arrays": [{name, dtype, shape,
                   offset, nbytes}], "meta": <the caller's JSON>}
    manifest.json  written last: format, format_version, seq, created (UTC),
                   epoch, batch, writer, size and crc32 of the two files
                   above, and a crc32 of the manifest itself

Checkpoints are named `ckpt-<seq>`, seq zero-padded to at least 10 digits
and never with a superfluous leading zero, so each seq has exactly one name
and a longer number is always a later checkpoint.

Every parser here raises FormatError (never a raw TypeError, ValueError,
OverflowError or RecursionError) for any input bytes.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

import numpy as np

from kerasbackup.store.fileio import coalesce, crc32, crc32_combine

FORMAT_VERSION = 1

MARKER_NAME = ".kerasbackup"
LOCK_NAME = ".lock"
MANIFEST_NAME = "manifest.json"
ARRAYS_NAME = "arrays.bin"
STATE_NAME = "state.json"
CHECKPOINT_FILES = (ARRAYS_NAME, STATE_NAME, MANIFEST_NAME)
CKPT_PREFIX = "ckpt-"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"

MANIFEST_FORMAT = "kerasbackup-checkpoint"
# A manifest is a few hundred bytes; anything far bigger is not ours.
MAX_MANIFEST_BYTES = 64 * 1024
# NumPy 1.x's limit; the writer refuses more so every table it writes loads.
MAX_NDIM = 32
# Sizes, offsets and dimensions must fit in a signed 64-bit integer.
MAX_INT = 2**63 - 1

_CKPT_RE = re.compile(r"^ckpt-(\d{10,})$")
_CRC_RE = re.compile(r"^[0-9a-f]{8}$")
# What numpy's dtype.str produces for the dtypes the writer accepts.
_DTYPE_RE = re.compile(r"^[<>|][biufcmMSUV]\d{1,9}(\[\w{1,8}\])?$")


class FormatError(Exception):
    """Bytes that are not a valid checkpoint file.

    Attributes:
        kind: the problem kind (see CorruptCheckpointError.problems).
        detail: what exactly is wrong, for people.
    """

    def __init__(self, kind, detail):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


# ------------------------------------------------------------------ names


def checkpoint_name(seq):
    """The directory name of checkpoint number `seq` (>= 1)."""
    return f"{CKPT_PREFIX}{int(seq):010d}"


def parse_checkpoint_name(name):
    """Returns the seq a checkpoint name stands for, or None if it is not one.

    Only the one canonical spelling counts (`ckpt-0000000007`, never
    `ckpt-7` or `ckpt-00000000007`), so two names never share a seq.
    """
    m = _CKPT_RE.match(name)
    if m is None:
        return None
    seq = int(m.group(1))
    return seq if seq >= 1 and checkpoint_name(seq) == name else None


def utc_now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------- results


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file of one checkpoint."""

    checkpoint: str
    file: str
    kind: str
    detail: str

    def as_dict(self):
        return {"checkpoint": self.checkpoint, "file": self.file,
                "kind": self.kind, "detail": self.detail}

    def __str__(self):
        return f"{self.file}: {self.kind} ({self.detail})"


@dataclass
class Inspection:
    """What inspecting one checkpoint found.

    `verified` is True when every check ran and passed, False when a problem
    was found, and None when only the structure was checked (no checksums).
    `arrays` and `meta` are filled only by a load that verified.
    """

    path: str
    seq: Optional[int]
    epoch: Optional[int] = None
    batch: Optional[int] = None
    created: Optional[str] = None
    size_bytes: int = 0
    verified: Optional[bool] = False
    problems: list = field(default_factory=list)
    arrays: Optional[dict] = None
    meta: Any = None

    @property
    def problem(self):
        return "; ".join(str(p) for p in self.problems) if self.problems else None

    def fail(self, file, kind, detail):
        self.problems.append(Problem(self.path, file, kind, detail))
        self.verified = False
        self.arrays = self.meta = None
        return self

    def info(self):
        """The public info dict (see CheckpointStore.checkpoints())."""
        return {"path": self.path, "seq": self.seq, "epoch": self.epoch,
                "batch": self.batch, "created": self.created,
                "size_bytes": self.size_bytes, "verified": self.verified,
                "problem": self.problem}


# ------------------------------------------------------------------- JSON


def json_default(obj):
    # numpy scalars sneak into histories and RNG states; store them as
    # plain Python numbers rather than failing the save.
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"meta is not JSON-serialisable: {type(obj).__name__} {obj!r}")


def _loads(raw, kind):
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise FormatError(kind, f"not UTF-8: {e}") from None
    except RecursionError:
        raise FormatError(kind, "invalid JSON: nested too deeply") from None
    except ValueError as e:
        raise FormatError(kind, f"invalid JSON: {e}") from None


def _is_int(x, low=0):
    # bool is an int in Python, but never a size, a shape or a seq here.
    return isinstance(x, int) and not isinstance(x, bool) and low <= x <= MAX_INT


# --------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Manifest:
    seq: int
    epoch: Optional[int]
    batch: Optional[int]
    created: Optional[str]
    files: dict  # name -> (size, crc32 as 8 hex digits)
    crc32: str = ""  # the manifest's own (verified) crc32
    extra: dict = field(default_factory=dict)  # a back end's own keys (see build_manifest)


def manifest_crc32(body):
    """crc32 of a manifest without its `manifest_crc32` key, as 8 hex digits.

    Computed over a canonical JSON form, so the file's own formatting does
    not matter.
    """
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return f"{crc32(canon.encode('utf-8')):08x}"


# The keys every manifest has; a back end may add its own (`extra`).
_MANIFEST_KEYS = frozenset(("format", "format_version", "seq", "created", "epoch",
                            "batch", "files", "writer", "manifest_crc32"))


def build_manifest(seq, epoch, batch, files, writer, extra=None):
    """Returns (manifest bytes, created, crc32) for a checkpoint's files.

    `files` maps each data file name to `(size, crc32 int)`. `extra` adds a
    back end's own keys (the object store's `objects` prefix); they are
    covered by the manifest's crc32 and come back in `Manifest.extra`.
    """
    created = utc_now()
    clash = _MANIFEST_KEYS.intersection(extra or {})
    if clash:
        raise ValueError(f"extra manifest keys {sorted(clash)} are reserved")
    manifest = dict(extra or {})
    manifest.update({
        "format": MANIFEST_FORMAT, "format_version": FORMAT_VERSION,
        "seq": seq, "created": created, "epoch": epoch, "batch": batch,
        "files": {n: {"size": s, "crc32": f"{c:08x}"} for n, (s, c) in files.items()},
        "writer": writer,
    })
    crc = manifest["manifest_crc32"] = manifest_crc32(manifest)
    return json.dumps(manifest, indent=1, sort_keys=True).encode(), created, crc


def parse_manifest(raw):
    """Checks a manifest's bytes; returns a Manifest or raises FormatError."""
    bad = "manifest unreadable"
    if not raw.strip():
        raise FormatError(bad, f"{MANIFEST_NAME} is empty")
    m = _loads(raw, bad)
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise FormatError(bad, "not a kerasbackup checkpoint manifest")
    version = m.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:
        raise FormatError(
            f"unknown format version {version}",
            f"this kerasbackup reads format version {FORMAT_VERSION}; "
            "the checkpoint was written by another kerasbackup version")
    body = dict(m)
    stored = body.pop("manifest_crc32", None)
    try:
        computed = manifest_crc32(body)
    except (RecursionError, ValueError) as e:  # NaN-free, but deep nesting
        raise FormatError(bad, f"cannot canonicalise it: {type(e).__name__}") from None
    if stored != computed:
        raise FormatError(
            "checksum mismatch",
            f"manifest crc32 is {stored!r}, its content hashes to {computed!r}")
    # The checksum matched, so what follows only a writer bug could produce.
    invalid = "invalid content"
    files = m.get("files")
    if not isinstance(files, dict):
        raise FormatError(invalid, "the manifest has no file list")
    checked = {}
    for name in (ARRAYS_NAME, STATE_NAME):
        entry = files.get(name)
        if not (isinstance(entry, dict) and _is_int(entry.get("size"))
                and isinstance(entry.get("crc32"), str)
                and _CRC_RE.match(entry["crc32"])):
            raise FormatError(invalid, f"the manifest's entry for {name} is "
                              f"malformed: {_short(entry)}")
        checked[name] = (entry["size"], entry["crc32"])
    seq = m.get("seq")
    if not _is_int(seq, 1):
        raise FormatError(invalid, f"seq is {_short(seq)}, not a positive integer")
    for key in ("epoch", "batch"):
        if m.get(key) is not None and not _is_int(m[key]):
            raise FormatError(invalid, f"{key} is {_short(m[key])}, not an integer >= 0")
    if m.get("created") is not None and not isinstance(m["created"], str):
        raise FormatError(invalid, f"created is {_short(m['created'])}, not a string")
    return Manifest(seq=seq, epoch=m.get("epoch"), batch=m.get("batch"),
                    created=m.get("created"), files=checked, crc32=stored,
                    extra={k: v for k, v in m.items() if k not in _MANIFEST_KEYS})


def _short(value, limit=60):
    try:
        text = repr(value)
    except RecursionError:
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------ array table


@dataclass(frozen=True)
class ArrayEntry:
    """One array of the table: where its bytes lie in arrays.bin."""

    name: str
    dtype: np.dtype
    shape: tuple
    offset: int
    nbytes: int


def _dtype_refusal(dt):
    if dt.hasobject or dt.fields is not None or dt.subdtype is not None:
        return "object, structured and sub-array dtypes cannot be stored"
    return None


def prepare_arrays(arrays, checksums=None):
    """Checks arrays and lays out the data file (no copies if C-contiguous).

    Returns `(table, buffers, total, crc)`: the JSON-ready table entries,
    the non-empty byte views in file order, the data file's size, and its
    crc32 when `checksums` (name -> crc32 of that array's bytes, taken by
    the caller) is not empty and crc32_combine exists (isal), else None
    (the writer takes it): the arrays it names are not read again, the
    others are read here. Raises TypeError or ValueError for arrays that
    cannot be stored.
    """
    known = checksums if checksums and crc32_combine is not None else None
    crc = None if known is None else 0
    entries, buffers, offset, seen = [], [], 0, set()
    for name, value in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"array names must be str, got {name!r}")
        if name in seen:  # only possible for mappings with odd equality
            raise ValueError(f"array name {name!r} appears twice")
        seen.add(name)
        a = np.asarray(value)
        dt = a.dtype
        why = _dtype_refusal(dt)
        if why:
            raise TypeError(f"array {name!r} has dtype {dt}; {why}")
        if a.ndim > MAX_NDIM:
            raise ValueError(f"array {name!r} has {a.ndim} dimensions; at most "
                             f"{MAX_NDIM} can be stored")
        shape = list(a.shape)  # before any reshaping: keeps 0-d arrays 0-d
        if not a.flags.c_contiguous:
            a = a.copy(order="C")
        flat = a.reshape(-1).view(np.uint8)
        entries.append({"name": name, "dtype": dt.str, "shape": shape,
                        "offset": offset, "nbytes": int(flat.nbytes)})
        if flat.nbytes:
            buffers.append(flat)
        if known is not None:
            if name in known:
                crc = crc32_combine(crc, known[name], flat.nbytes)
            else:
                crc = crc32(flat, crc)
        offset += int(flat.nbytes)
    return entries, coalesce(buffers), offset, crc


def build_state(table, meta):
    """state.json's bytes. Raises TypeError if meta is not JSON-serialisable."""
    return json.dumps({"format_version": FORMAT_VERSION, "arrays": table, "meta": meta},
                      default=json_default).encode("utf-8")


def check_position(meta, manifest):
    """Raises FormatError if meta's "epoch" or "batch" (the caller's training
    state, where it has them) contradicts the manifest's."""
    if not isinstance(meta, dict):
        return
    for key in ("epoch", "batch"):
        want = getattr(manifest, key)
        if key in meta and want is not None and meta[key] != want:
            raise FormatError("invalid content",
                              f"{STATE_NAME} says {key} {meta[key]!r:.40}, "
                              f"{MANIFEST_NAME} says {want}")


def write_failure_text(backup_dir, epoch, batch, reason):
    """The message of a failed save. It names the resume point, so that
    each failure is its own warning (Python shows a repeated one once)."""
    point = "" if epoch is None else f" (to resume at epoch {epoch + 1} after batch {batch or 0})"
    return (f"could not write a checkpoint{point} to backup_dir '{backup_dir}': "
            f"{reason}. The previous checkpoint, if any, is unchanged.")


def prepare_save(arrays, meta, epoch, batch, checksums=None):
    """Checks and encodes a save's inputs before anything is written.

    Returns `(buffers, total, crc, state_bytes, epoch, batch)`; see
    prepare_arrays() for `crc` (None: the writer takes it) and for what is
    refused, and build_state().
    """
    table, buffers, total, crc = prepare_arrays(arrays, checksums)
    state_bytes = build_state(table, meta)
    epoch = None if epoch is None else int(epoch)
    batch = None if batch is None else int(batch)
    return buffers, total, crc, state_bytes, epoch, batch


def parse_state(raw, data_size):
    """Checks state.json against a data file of `data_size` bytes.

    Returns `(entries, meta)` with `entries` a list of ArrayEntry in file
    order, each well formed and exactly tiling the data file. Raises
    FormatError ("invalid content") otherwise.
    """
    invalid = "invalid content"
    state = _loads(raw, invalid)
    if not isinstance(state, dict) or not isinstance(state.get("arrays"), list):
        raise FormatError(invalid, f"{STATE_NAME} has no array table")
    if "meta" not in state:
        raise FormatError(invalid, f"{STATE_NAME} has no meta")
    entries, names, offset = [], set(), 0
    for i, e in enumerate(state["arrays"]):
        entry = _parse_entry(i, e, offset)
        if entry.name in names:
            raise FormatError(invalid, f"array {entry.name!r} appears twice in the table")
        names.add(entry.name)
        offset += entry.nbytes
        if offset > data_size:
            raise FormatError(invalid, f"array {entry.name!r} ends at byte {offset}, "
                              f"past the end of {ARRAYS_NAME} ({data_size} bytes)")
        entries.append(entry)
    if offset != data_size:
        raise FormatError(invalid, f"the arrays need {offset} bytes, {ARRAYS_NAME} "
                          f"has {data_size}")
    return entries, state["meta"]


def _parse_entry(i, e, offset):
    def bad(detail):
        return FormatError("invalid content", f"array table entry {i}: {detail}")

    if not isinstance(e, dict):
        raise bad(f"{_short(e)} is not an object")
    name = e.get("name")
    if not isinstance(name, str):
        raise bad(f"name {_short(name)} is not a string")
    label = f"array {name!r}"
    dtype = e.get("dtype")
    if not (isinstance(dtype, str) and _DTYPE_RE.match(dtype)):
        raise bad(f"{label}: dtype {_short(dtype)} is not a numpy dtype string")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError) as e_:
        raise bad(f"{label}: dtype {dtype!r} is not valid ({e_})") from None
    why = _dtype_refusal(dt)
    if why is None and dt.itemsize == 0:
        why = "it has no size"
    if why:
        raise bad(f"{label}: dtype {dtype!r}: {why}")
    shape = e.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise bad(f"{label}: shape {_short(shape)} is not a list of at most "
                  f"{MAX_NDIM} integers")
    if not all(_is_int(s) for s in shape):
        raise bad(f"{label}: shape {_short(shape)} holds a value that is not an "
                  "integer >= 0")
    count = 1
    for s in shape:
        count *= s  # Python ints: no overflow, checked against MAX_INT below
    nbytes = count * dt.itemsize
    # numpy also needs every dimension's extent to fit, even with a 0 elsewhere.
    extent = 1
    for s in shape:
        extent *= max(s, 1)
    if nbytes > MAX_INT or extent * max(dt.itemsize, 1) > MAX_INT:
        raise bad(f"{label}: shape {_short(shape)} is too large")
    if e.get("offset") != offset or not _is_int(e.get("offset")):
        raise bad(f"{label}: offset is {_short(e.get('offset'))}, expected {offset}")
    if e.get("nbytes") != nbytes or not _is_int(e.get("nbytes")):
        raise bad(f"{label}: nbytes is {_short(e.get('nbytes'))}, but shape "
                  f"{shape} of {dt.str} needs {nbytes}")
    return ArrayEntry(name=name, dtype=dt, shape=tuple(shape), offset=offset,
                      nbytes=nbytes)

