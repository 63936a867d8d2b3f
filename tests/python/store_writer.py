"""Checkpoint writer that test_store_crash.py kills with SIGKILL.

Usage: python store_writer.py BACKUP_DIR RECORD_FILE KEEP STOP_AT STOP_NTH [delete]

Opens a CheckpointStore on BACKUP_DIR, resumes after the newest checkpoint
and saves checkpoints forever. Each checkpoint's arrays are a pure function
of its epoch (see make_arrays), so a reader can tell whether what it loaded
is consistent. After each save() returns, "seq epoch" is appended to
RECORD_FILE and fsynced: every line there is a save that completed.

With STOP_AT set to one of POINTS, the writer stops at the STOP_NTH time it
reaches that step of the store: it prints "stopped POINT" and blocks, and
the test kills it there. So every step is hit for certain, without relying
on timing. The steps are the store's phases (its public phase hook) and the
file-system calls it makes (os.write, os.fsync, os.rename, os.unlink,
os.rmdir, which this process wraps). If it has not got there after
MAX_SAVES saves, it says "not reached" and exits with status 3. With STOP_AT
"none" it just saves; the test then kills it at a random moment.

With "delete" it saves KEEP + 1 checkpoints, then calls delete(); the stop
points count only within delete().
"""

import itertools
import os
import stat
import sys
import threading
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "inst", "python"))

from kerasbackup import store  # noqa: E402  (after the path is set)

POINTS = (
    "staging",             # phase: staging directory created
    "write-half",          # half of a data write done
    "arrays_chunk",        # phase: a chunk of arrays.bin written
    "fsync",               # before a file's fsync
    "arrays_written",      # phase: arrays.bin synced
    "manifest_written",    # phase: staging complete, about to publish
    "publish-rename",      # before the publishing rename
    "published-unsynced",  # renamed, directory not yet synced
    "fsync-dir",           # before a directory's fsync
    "published",           # phase: published and synced
    "trash-rename",        # before an old checkpoint is renamed to trash
    "remove",              # before a file of a trashed/leftover dir is unlinked
    "rmdir",               # before a trashed/leftover dir is removed
    "pruned",              # phase: old checkpoints moved to trash
)
MAX_SAVES = 20


def make_arrays(epoch):
    """The arrays of the checkpoint for `epoch`: ~30-350 kB, sizes vary by epoch."""
    n = 2_000 + (epoch * 7919) % 34_000
    rows = epoch % 13 + 1
    return {
        "weights": np.arange(n, dtype=np.float64) * 0.5 + epoch,
        "counts": np.full((rows, 100), epoch, dtype=np.int32),
        "mask": (np.arange(5_000 + (epoch * 31) % 900) % (epoch % 5 + 2)) == 0,
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


class Stopper:
    """Counts the steps and blocks at the chosen one until killed."""

    def __init__(self, point, nth):
        self.point, self.left = point, nth
        self.mutex = threading.Lock()
        self.armed = True

    def at(self, point):
        if point != self.point or not self.armed:
            return
        with self.mutex:
            self.left -= 1
            hit = self.left == 0
        if hit:
            sys.stdout.write(f"stopped {point}\n")
            sys.stdout.flush()
            threading.Event().wait()  # until SIGKILL


def instrument(stopper, record_fd):
    """Wraps the os calls the store makes so that each step is a stop point."""
    real = {name: getattr(os, name) for name in ("write", "fsync", "rename", "unlink", "rmdir")}

    def write(fd, data):
        mv = memoryview(data)
        if fd == record_fd or len(mv) < 2:
            return real["write"](fd, mv)
        half = len(mv) // 2
        done = real["write"](fd, mv[:half])
        if done < half:
            return done
        stopper.at("write-half")
        return done + real["write"](fd, mv[half:])

    def fsync(fd):
        if fd != record_fd:
            stopper.at("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync")
        return real["fsync"](fd)

    def rename(src, dst, **kwargs):
        trash = os.path.basename(dst).startswith(store.TRASH_PREFIX)
        stopper.at("trash-rename" if trash else "publish-rename")
        result = real["rename"](src, dst, **kwargs)
        if not trash:
            stopper.at("published-unsynced")
        return result

    def unlink(path, **kwargs):
        stopper.at("remove")
        return real["unlink"](path, **kwargs)

    def rmdir(path, **kwargs):
        stopper.at("rmdir")
        return real["rmdir"](path, **kwargs)

    os.write, os.fsync, os.rename, os.unlink, os.rmdir = write, fsync, rename, unlink, rmdir
    store.set_phase_hook(lambda phase, info: stopper.at(phase))


def main():
    backup_dir, record_file = sys.argv[1:3]
    keep, point, nth = int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    assert point in ("none", "deleting", "deleted") + POINTS, point
    delete = sys.argv[6:] == ["delete"]
    rec = os.open(record_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stopper = Stopper(point, nth)
    stopper.armed = not delete
    instrument(stopper, rec)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stale-lock takeover is expected here
        st = store.CheckpointStore(backup_dir, keep=keep).open()
    loaded = st.load()
    epoch = 0 if loaded is None else loaded[1]["epoch"] + 1
    print("ready", flush=True)
    if delete:
        for epoch in range(keep + 1):
            st.save(make_arrays(epoch), {"epoch": epoch}, epoch, 0)
        stopper.armed = True
        st.delete()
        print("not reached", flush=True)
        sys.exit(3)

    for _ in itertools.count() if point == "none" else range(MAX_SAVES):
        info = st.save(make_arrays(epoch), {"epoch": epoch}, epoch, epoch % 7)
        os.write(rec, f"{info['seq']} {epoch}\n".encode())
        os.fsync(rec)
        epoch += 1
    st.close()
    print("not reached", flush=True)
    sys.exit(3)


if __name__ == "__main__":
    main()
