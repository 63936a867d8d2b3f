"""Checkpoint writer that test_store_crash.py kills with SIGKILL at random.

Usage: python store_writer.py BACKUP_DIR RECORD_FILE PHASE_FILE KEEP SEED JITTER

Opens a CheckpointStore on BACKUP_DIR, resumes after the newest checkpoint
and saves checkpoints forever. Each checkpoint's arrays are a pure function
of its epoch (see make_arrays), so a reader can tell whether what it loaded
is consistent. After each save() returns, "seq epoch" is appended to
RECORD_FILE and fsynced: every line there is a save that completed.

Before each file-system step of the store the writer records the step's name
in PHASE_FILE (no fsync needed: the page cache survives a killed process), so
the test can show where its kills landed: bytes 0-31 hold the save's current
step, bytes 32-63 "rmtree" while an old checkpoint is being deleted. With
JITTER=1 it also sleeps a random 0-3 ms (up to 15 ms at renames) at those
steps, widening the windows between them.
"""

import importlib.util
import os
import random
import shutil
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
STORE_PY = os.path.join(HERE, "..", "..", "inst", "python", "kerasbackup", "store.py")


def load_store_module():
    """Imports store.py by path: the package __init__ would import Keras (slow)."""
    spec = importlib.util.spec_from_file_location("kb_store_writer", STORE_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_arrays(epoch):
    """The arrays of the checkpoint for `epoch`: ~0.2-3 MB, sizes vary by epoch."""
    n = 20_000 + (epoch * 7919) % 340_000
    rows = epoch % 13 + 1
    return {
        "weights": np.arange(n, dtype=np.float64) * 0.5 + epoch,
        "counts": np.full((rows, 1000), epoch, dtype=np.int32),
        "mask": (np.arange(50_000 + (epoch * 31) % 9_000) % (epoch % 5 + 2)) == 0,
        "step": np.array(epoch, dtype=np.int64),
    }


def check_arrays(arrays, epoch):
    """Raises AssertionError unless `arrays` are exactly make_arrays(epoch)."""
    expected = make_arrays(epoch)
    assert sorted(arrays) == sorted(expected), sorted(arrays)
    for name, a in expected.items():
        b = arrays[name]
        assert b.dtype == a.dtype and b.shape == a.shape, (name, b.dtype, b.shape)
        assert b.tobytes() == a.tobytes(), f"{name} does not match epoch {epoch}"


class _Phases:
    """Records the current store step in a file and optionally jitters it."""

    def __init__(self, path, jitter, rng):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.jitter = jitter
        self.rng = rng

    # Steps that take microseconds get longer pauses, or kills would hardly
    # ever land next to them.
    LONGER = {"publish-rename": 0.015, "trash-rename": 0.015, "fsync-dir": 0.01}

    def set(self, name, slot=0):
        os.pwrite(self.fd, name.encode().ljust(32), 32 * slot)
        if name and self.jitter and self.rng.random() < 0.7:
            time.sleep(self.rng.uniform(0, self.LONGER.get(name, 0.003)))

    def wrap(self, namer, func):
        def wrapper(*args, **kwargs):
            self.set(namer(*args))
            return func(*args, **kwargs)
        return wrapper


def main():
    backup_dir, record_file, phase_file = sys.argv[1:4]
    keep, seed, jitter = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
    store = load_store_module()
    real_fsync = os.fsync
    phases = _Phases(phase_file, jitter, random.Random(seed))

    # Instrument the steps the store takes. The store calls these through the
    # os/shutil modules and its own globals, so patching them here reaches it.
    real_write_all = store._write_all

    def write_all(fd, mv):
        # Two halves, so a kill can land in the middle of a data file.
        half = len(mv) // 2
        phases.set("write")
        real_write_all(fd, mv[:half])
        phases.set("write-2nd-half")
        real_write_all(fd, mv[half:])

    store._write_all = write_all
    os.fsync = phases.wrap(lambda fd: "fsync", real_fsync)
    store._fsync_dir = phases.wrap(lambda p: "fsync-dir", store._fsync_dir)
    os.mkdir = phases.wrap(lambda p, *a: "mkdir", os.mkdir)
    os.rename = phases.wrap(
        lambda src, dst: "trash-rename" if os.path.basename(dst).startswith(".trash")
        else "publish-rename", os.rename)
    real_rmtree = shutil.rmtree

    def rmtree(*args, **kwargs):
        # Pruned checkpoints are deleted on a background thread, so this
        # step gets its own slot (bytes 32-63) in the phase file.
        phases.set("rmtree", slot=1)
        try:
            return real_rmtree(*args, **kwargs)
        finally:
            phases.set("", slot=1)

    shutil.rmtree = rmtree

    phases.set("open")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stale-lock takeover is expected here
        st = store.CheckpointStore(backup_dir, keep=keep).open()
    phases.set("load")
    loaded = st.load()
    epoch = 0 if loaded is None else loaded[1]["epoch"] + 1
    print("ready", flush=True)

    rec = os.open(record_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    while True:
        phases.set("prepare")
        info = st.save(make_arrays(epoch), {"epoch": epoch}, epoch, epoch % 7)
        phases.set("record")
        os.write(rec, f"{info['seq']} {epoch}\n".encode())
        real_fsync(rec)
        epoch += 1


if __name__ == "__main__":
    main()
