"""kill -9 test: a writer killed at any instant never loses or corrupts a checkpoint.

store_writer.py saves checkpoints in a loop. This test SIGKILLs it, reusing
the same backup directories: first at every step of a save, a prune and the
clean-up of leftovers (the writer stops there and says so, then is killed:
no timing involved), then at random moments (seeded; the seed is printed).
After every kill it checks that:

* every published ckpt-* directory verifies (no half-written checkpoint is
  ever visible under a checkpoint name);
* open() takes over the dead writer's lock and removes its staging/trash;
* load() returns a checkpoint whose arrays match its epoch, never falls back,
  and is the last completed save or a later one (published but killed
  before it could be recorded); None only if no save ever completed.
"""

import os
import random
import subprocess
import sys
import time
import warnings

import pytest

import store_writer
from kerasbackup.store import (
    STAGING_PREFIX,
    TRASH_PREFIX,
    CheckpointFallbackWarning,
    CheckpointStore,
    StaleLockWarning,
    backup_info,
)

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "store_writer.py")
SEED = int(os.environ.get("KB_CRASH_SEED", "20240611"))
N_RANDOM_KILLS = 20


def _completed_saves(record_file):
    """(seq, epoch) of every save the writer finished; ignores a torn last line."""
    if not os.path.exists(record_file):
        return []
    with open(record_file) as f:
        text = f.read()
    lines = text.split("\n")[:-1]  # the part after the last newline may be torn
    return [tuple(int(x) for x in line.split()) for line in lines]


def _leftovers(d):
    return [n for n in os.listdir(d) if n.startswith((STAGING_PREFIX, TRASH_PREFIX))]


def _check_after_kill(d, keep, record_file, excess):
    """Verifies backup_dir after a kill; returns the loaded epoch (None if none).

    `excess` bounds how many checkpoints may have been published without
    being recorded (or pruned) yet: each killed run can publish at most one
    after its last recorded save, so it is 1 for the run that last recorded
    a save plus 1 for each run since.
    """
    done = _completed_saves(record_file)
    # Every checkpoint name on disk is a complete, verifiable checkpoint.
    infos = backup_info(d)
    bad = [i for i in infos if not i["verified"]]
    assert not bad, bad
    # Each kill between publish and prune can leave one more than `keep`;
    # the next completed save prunes them all.
    assert len(infos) <= keep + excess, [i["path"] for i in infos]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        st = CheckpointStore(d, keep=keep).open()
        try:
            assert not _leftovers(d)
            result = st.load()
        finally:
            st.close()
    kinds = [w.category for w in caught]
    assert CheckpointFallbackWarning not in kinds, [str(w.message) for w in caught]
    # A takeover warns, unless the writer died before recording itself.
    assert set(kinds) <= {StaleLockWarning}, [str(w.message) for w in caught]

    if result is None:
        assert not done, f"completed saves {done[-3:]} but load() returned None"
        assert not infos
        return None
    arrays, meta, info = result
    store_writer.check_arrays(arrays, meta["epoch"])
    assert info["epoch"] == meta["epoch"] and info["verified"] is True
    assert info["seq"] == infos[-1]["seq"]
    if done:
        last_seq, last_epoch = done[-1]
        # Durable: the last completed save, or a later one that was published
        # but not yet recorded when a kill came (at most one per killed run).
        assert last_seq <= info["seq"] <= last_seq + excess, (info, done[-1])
        if info["seq"] == last_seq:
            assert meta["epoch"] == last_epoch
    else:
        assert info["seq"] <= excess
    # The writer saves epoch e as seq e + 1 and resumes from what it loads.
    assert meta["epoch"] == info["seq"] - 1, info
    return meta["epoch"]


class Scenario:
    """One backup_dir that writer after writer is killed in."""

    def __init__(self, base, keep):
        base.mkdir()
        self.keep = keep
        self.dir = str(base / "backup")
        self.record = str(base / "completed.txt")
        self.stderr = str(base / "writer.stderr")
        self.saves = 0
        self.unrecorded_runs = 0

    def start(self, point="none", nth=1, *extra):
        with open(self.stderr, "ab") as err:
            return subprocess.Popen(
                [sys.executable, WRITER, self.dir, self.record, str(self.keep),
                 point, str(nth), *extra], stdout=subprocess.PIPE, stderr=err)

    def fail(self, proc, why):
        proc.kill()
        proc.wait()
        with open(self.stderr) as f:
            pytest.fail(f"{why}; writer stderr: {f.read()[-3000:]}")

    def kill_at(self, point, nth, check=True, delete=False):
        """Runs a writer until it stops at `point`, kills it, checks the dir."""
        proc = self.start(point, nth, *(["delete"] if delete else []))
        try:
            for line in proc.stdout:  # "ready" may come first
                if line.strip() == f"stopped {point}".encode():
                    break
            else:
                self.fail(proc, f"writer ended before reaching {point} #{nth}")
            proc.kill()
        finally:
            proc.wait()
            proc.stdout.close()
        return self.after_kill(check)

    def kill_randomly(self, rng):
        proc = self.start()
        try:
            line = proc.stdout.readline()
            if line.strip() != b"ready":
                self.fail(proc, "writer failed to start")
            # A random moment among the next few saves. Whatever the moment,
            # the checks below must hold: nothing is asserted about timing.
            time.sleep(rng.uniform(0.0, 0.2))
            proc.kill()
        finally:
            proc.wait()
            proc.stdout.close()
        return self.after_kill()

    def after_kill(self, check=True):
        n_saves = len(_completed_saves(self.record))
        # Runs since (and including) the last one that recorded a save.
        self.unrecorded_runs = 1 if n_saves > self.saves else self.unrecorded_runs + 1
        self.saves = n_saves
        if not check:
            return None
        return _check_after_kill(self.dir, self.keep, self.record, self.unrecorded_runs)


def test_kill9_at_every_step(tmp_path):
    """Kills the writer at each step of the store (with keep=2 at its 1st and
    3rd time, when older checkpoints are there to prune)."""
    for keep in (1, 2):
        sc = Scenario(tmp_path / f"keep{keep}", keep)
        # Killed in its very first save, then while the next open() removes
        # that staging directory; nothing was completed.
        sc.kill_at("arrays_chunk", 1, check=False)
        assert _leftovers(sc.dir)
        assert sc.kill_at("remove", 1) is None
        for nth in (1, 3) if keep == 2 else (1,):
            for point in store_writer.POINTS:
                epoch = sc.kill_at(point, nth)
        assert sc.saves >= 1 and epoch is not None, (sc.saves, epoch)


# Steps of delete() with keep=2 (two checkpoints): unlinks 1-3 and 4-6 are
# their files, each followed by an rmdir; unlink 7 is the lock, 8 the
# marker; rmdir 3 is backup_dir itself.
DELETE_STEPS = [("deleting", 1), ("trash-rename", 1), ("trash-rename", 2),
                ("fsync-dir", 1), ("remove", 1), ("remove", 4), ("rmdir", 1),
                ("remove", 7), ("remove", 8), ("rmdir", 3)]


@pytest.mark.parametrize("point,nth", DELETE_STEPS)
def test_kill9_during_delete_leaves_a_usable_directory(tmp_path, point, nth):
    sc = Scenario(tmp_path / "s", keep=2)
    sc.kill_at(point, nth, check=False, delete=True)
    d = sc.dir
    if os.path.exists(d):
        # Never half a checkpoint under a checkpoint name, and never a
        # directory the store no longer recognises as its own.
        assert all(i["verified"] for i in backup_info(d)), backup_info(d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StaleLockWarning)
            with CheckpointStore(d, keep=2) as st:
                loaded = st.load()
        if loaded is not None:
            store_writer.check_arrays(loaded[0], loaded[1]["epoch"])
        CheckpointStore(d).delete()
    assert not os.path.exists(d)


def test_kill9_at_random_moments(tmp_path):
    print(f"seed {SEED} (set KB_CRASH_SEED to replay another)")
    rng = random.Random(SEED)
    scenarios = [Scenario(tmp_path / f"keep{keep}", keep) for keep in (1, 2)]
    for i in range(N_RANDOM_KILLS):
        scenarios[i % 2].kill_randomly(rng)
    saves = [sc.saves for sc in scenarios]
    print(f"{N_RANDOM_KILLS} random kills; completed saves per directory: {saves}")
