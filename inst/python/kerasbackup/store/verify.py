"""Verification: inspects checkpoints and picks the newest one that verifies.

Works on any back end's checkpoint files: an object with `path`,
`open(name)` (a file with `size`, `read(n)`, `readinto(mv)`, `at_eof()`,
`close()`; raising FileNotFoundError, NotRegularFileError or OSError),
`size_bytes()` (asked last) and optionally `check_manifest(manifest)` (a
back end's own checks of the parsed manifest; raises FormatError). Every read is
bounded by the size the manifest declares (the manifest itself by
MAX_MANIFEST_BYTES), and whatever the files contain, the result is an
Inspection with problems, never a raw exception. An exception that is not
an OSError (an object store that cannot be reached) is not damage: it
propagates, and no checkpoint is judged by it.
"""


import numpy as np

from kerasbackup import errors
from kerasbackup.errors import (
    CheckpointFallbackWarning, CorruptCheckpointError, NoCheckpointError)
from kerasbackup.store.fileio import (
    CHUNK, THREAD_MIN, Crc32, NotRegularFileError, chunks, os_error_text)
from kerasbackup.store.format import (
    ARRAYS_NAME, MANIFEST_NAME, MAX_MANIFEST_BYTES, STATE_NAME, FormatError,
    Inspection, check_position, parse_manifest, parse_state)

STRUCTURE, VERIFY, LOAD = "structure", "verify", "load"

# Whatever a malformed file provokes in parsing or numpy, it is classed as
# a corrupt checkpoint, never raised raw.
_CONTENT_ERRORS = (FormatError, TypeError, ValueError, OverflowError, RecursionError)


def inspect(files, seq, mode):
    """Inspects one checkpoint; returns an Inspection.

    `mode` is "structure" (manifest, presence and sizes only), "verify" (also
    checksums, streaming) or "load" (verify while reading the arrays into
    `arrays` and `meta`).
    """
    ins = Inspection(path=files.path, seq=seq)
    opened, where = [], [MANIFEST_NAME]
    try:
        _inspect(files, mode, ins, opened, where)
    except _CONTENT_ERRORS as e:
        kind, detail = ((e.kind, e.detail) if isinstance(e, FormatError)
                        else ("invalid content", f"{type(e).__name__}: {e}"))
        ins.fail(where[0], kind, detail)
    finally:
        for f in opened:
            f.close()
    try:
        ins.size_bytes = files.size_bytes()
    except OSError:
        pass
    return ins


def _open(files, name, ins, opened):
    """Opens one file of the checkpoint, or records why it can't; returns it or None."""
    manifest = name == MANIFEST_NAME  # without it nothing else can be checked
    try:
        f = files.open(name)
    except FileNotFoundError:
        ins.fail(name, "manifest unreadable" if manifest else "missing",
                 f"{name} is missing" if manifest else f"{name} does not exist")
        return None
    except NotRegularFileError as e:
        ins.fail(name, "not a regular file", f"{name} is {e.what}")
        return None
    except OSError as e:
        ins.fail(name, "manifest unreadable" if manifest else "unreadable",
                 f"cannot read it: {os_error_text(e)}" if manifest else os_error_text(e))
        return None
    opened.append(f)
    return f


def _inspect(files, mode, ins, opened, where):
    f = _open(files, MANIFEST_NAME, ins, opened)
    if f is None:
        return
    if f.size > MAX_MANIFEST_BYTES:
        ins.fail(MANIFEST_NAME, "manifest unreadable",
                 f"{f.size} bytes, far more than a manifest (at most {MAX_MANIFEST_BYTES})")
        return
    try:
        raw = f.read(f.size)
    except OSError as e:
        ins.fail(MANIFEST_NAME, "manifest unreadable", f"cannot read it: {os_error_text(e)}")
        return
    manifest = parse_manifest(raw)
    check = getattr(files, "check_manifest", None)
    if check is not None:
        check(manifest)
    ins.epoch, ins.batch, ins.created = manifest.epoch, manifest.batch, manifest.created

    # Cheap checks on every file first, so all of them are reported at once.
    handles = {}
    for name in (STATE_NAME, ARRAYS_NAME):
        h = _open(files, name, ins, opened)
        if h is None:
            continue
        handles[name] = h
        expected = manifest.files[name][0]
        if h.size != expected:
            kind = "truncated" if h.size < expected else "size mismatch"
            ins.fail(name, kind, f"manifest says {expected} bytes, file has {h.size}")
    if ins.problems:
        return
    if mode == STRUCTURE:
        ins.verified = None  # not checked, see checkpoints(verify=False)
        return

    name = where[0] = STATE_NAME
    size, expected_crc = manifest.files[STATE_NAME]
    try:
        h = handles[STATE_NAME]
        raw = h.read(size)
        if len(raw) != size or not h.at_eof():
            _changed(ins, name, len(raw) < size)
            return
        crc = Crc32(threaded=False)
        crc.feed(raw)
        if not _crc_ok(ins, name, expected_crc, crc.result()):
            return
        entries, meta = parse_state(raw, manifest.files[ARRAYS_NAME][0])
        check_position(meta, manifest)

        name = where[0] = ARRAYS_NAME
        size, expected_crc = manifest.files[ARRAYS_NAME]
        crc = Crc32(threaded=size >= THREAD_MIN)
        arrays = {} if mode == LOAD else None
        try:
            short = _read_arrays(handles[ARRAYS_NAME], entries, size, crc, arrays)
        finally:
            computed = crc.result()  # also stops the helper thread on errors
    except OSError as e:
        ins.fail(name, "unreadable", os_error_text(e))
        return
    if short is not None:
        _changed(ins, ARRAYS_NAME, short)
        return
    if not _crc_ok(ins, ARRAYS_NAME, expected_crc, computed):
        return
    ins.verified = True
    if mode == LOAD:
        ins.arrays, ins.meta = arrays, meta


def _changed(ins, name, short):
    ins.fail(name, "truncated" if short else "size mismatch",
             "file changed size while being read")


def _crc_ok(ins, name, expected, computed):
    if f"{computed:08x}" != expected:
        ins.fail(name, "checksum mismatch",
                 f"manifest says crc32 {expected}, file hashes to {computed:08x}")
        return False
    return True


def _read_arrays(f, entries, size, crc, arrays):
    """Streams exactly `size` bytes of `f` through `crc`; fills `arrays` if given.

    Returns None if the file had exactly `size` bytes, True if it was
    shorter and False if it was longer (it changed after the size check).
    """
    if arrays is not None:
        # Read straight into the final arrays: no intermediate copies.
        for e in entries:
            a = np.empty(e.shape, dtype=e.dtype)
            arrays[e.name] = a
            for chunk in chunks(memoryview(a.reshape(-1).view(np.uint8))):
                if f.readinto(chunk) != len(chunk):
                    return True
                crc.feed(chunk)
    else:
        # Two alternating buffers: read one while the other is hashed.
        bufs = [bytearray(min(CHUNK, size)) for _ in range(2)] if size else []
        remaining, k = size, 0
        while remaining > 0:
            if k >= 2:
                crc.wait_done(k - 1)  # chunk k-2 used this buffer
            mv = memoryview(bufs[k % 2])[: min(CHUNK, remaining)]
            if f.readinto(mv) != len(mv):
                return True
            crc.feed(mv)
            remaining -= len(mv)
            k += 1
    return None if f.at_eof() else False


# ------------------------------------------------------------- choosing


def load_newest(inspections, backup_dir, required=False, accept=None):
    """Returns `(arrays, meta, info)` of the first inspection that verified.

    `inspections` yields Inspections made in "load" mode, newest first
    (lazily: older ones are only read if the newer failed). `accept`, if
    given, may reject one that verified (see CheckpointStore.load). Warns
    CheckpointFallbackWarning if newer ones failed; raises
    CorruptCheckpointError if all failed; with none at all returns None, or
    raises NoCheckpointError if `required`.
    """
    failed = []
    for ins in inspections:
        if not ins.problems and accept is not None:
            for p in accept(ins.arrays, ins.meta, ins.info()) or ():
                ins.fail(p["file"], p["kind"], p["detail"])
        if ins.problems:
            failed.extend(ins.problems)
            continue
        if failed:
            why = "; ".join(f"'{p.checkpoint}' {p}" for p in failed)
            errors.warn(
                f"backup_dir '{backup_dir}': newer checkpoint failed verification "
                f"({why}); loaded the older checkpoint '{ins.path}' "
                f"(epoch {ins.epoch}, batch {ins.batch}) instead. "
                "The failed checkpoint was left in place.",
                CheckpointFallbackWarning, stacklevel=4)
        return ins.arrays, ins.meta, ins.info()
    if failed:
        why = "; ".join(f"checkpoint '{p.checkpoint}': {p}" for p in failed)
        raise CorruptCheckpointError(
            f"no checkpoint in backup_dir '{backup_dir}' passed verification: "
            f"{why}. The files were left in place for inspection.",
            backup_dir, [p.as_dict() for p in failed])
    if required:
        raise NoCheckpointError(f"backup_dir '{backup_dir}' contains no checkpoint",
                                backup_dir)
    return None
