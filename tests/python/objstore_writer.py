"""Object-store checkpoint writer that test_objstore_servers.py kills with SIGKILL.

Usage: python objstore_writer.py URL PART_SIZE

Opens an ObjectCheckpointStore on URL (taking over the lease of the writer
killed before it), checks the checkpoint it resumes from, then saves forever.
Checkpoint arrays are a pure function of their epoch (make_arrays), every
other one large enough for a multipart upload. It prints, flushed, one line
per event: "resumed EPOCH" (or "resumed -1"), "phase NAME" before each step
of the store, "saved SEQ EPOCH" after each save returned. The test kills it
after a random number of lines.
"""

import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "inst", "python"))

from kerasbackup import errors  # noqa: E402  (after the path is set)
from kerasbackup.store import objstore, phases  # noqa: E402


def make_arrays(epoch, part_size):
    big = epoch % 2 == 1
    n = (2 * part_size + part_size // 3) // 8 if big else 1000 + epoch * 37
    return {"w": np.arange(n, dtype=np.float64) + epoch,
            "e": np.array(epoch, dtype=np.int64),
            "m": np.full((epoch % 5 + 1, 7), epoch % 251, dtype=np.uint8)}


def check_arrays(arrays, epoch, part_size):
    want = make_arrays(epoch, part_size)
    assert sorted(arrays) == sorted(want), sorted(arrays)
    for k, a in want.items():
        b = arrays[k]
        assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes(), k


def main(url, part_size):
    def say(*words):
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()
    store = objstore.ObjectCheckpointStore(url, keep=2, part_size=part_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.StaleLockWarning)
        store.open()
    loaded = store.load()
    epoch = -1
    if loaded is not None:
        arrays, meta, _ = loaded
        epoch = meta["epoch"]
        check_arrays(arrays, epoch, part_size)
    say("resumed", epoch)
    phases.set_phase_hook(lambda name, info: say("phase", name))
    while True:
        epoch += 1
        info = store.save(make_arrays(epoch, part_size), {"epoch": epoch}, epoch, 0)
        say("saved", info["seq"], epoch)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
