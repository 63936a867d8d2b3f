"""kill -9 test: a writer killed at any instant never loses or corrupts a checkpoint.

store_writer.py saves checkpoints in a loop; this test SIGKILLs it at random
moments (seeded) more than 200 times, reusing the same backup directories,
and after every kill checks that:

* every published ckpt-* directory verifies (no half-written checkpoint is
  ever visible under a checkpoint name);
* open() takes over the dead writer's lock and removes its staging/trash;
* load() returns a checkpoint whose arrays match its epoch, never falls back,
  and is the last completed save or the one after it (published but killed
  before it could be recorded); None only if no save ever completed.
"""

import collections
import os
import random
import subprocess
import sys
import time
import warnings

import pytest

import store_writer
from kerasbackup.store import (
    CheckpointFallbackWarning,
    CheckpointStore,
    StaleLockWarning,
    backup_info,
)

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "store_writer.py")
N_KILLS = 220
SEED = 20240611


def _completed_saves(record_file):
    """(seq, epoch) of every save the writer finished; ignores a torn last line."""
    if not os.path.exists(record_file):
        return []
    with open(record_file) as f:
        text = f.read()
    lines = text.split("\n")[:-1]  # the part after the last newline may be torn
    return [tuple(int(x) for x in line.split()) for line in lines]


def _check_after_kill(d, keep, record_file, excess):
    """Verifies backup_dir after a kill; returns (loaded epoch, stale warned).

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
            leftovers = [n for n in os.listdir(d) if n.startswith((".staging", ".trash"))]
            assert not leftovers, leftovers
            result = st.load()
        finally:
            st.close()
    kinds = [w.category for w in caught]
    assert CheckpointFallbackWarning not in kinds, [str(w.message) for w in caught]
    assert set(kinds) <= {StaleLockWarning}, [str(w.message) for w in caught]

    if result is None:
        assert not done, f"completed saves {done[-3:]} but load() returned None"
        assert not infos
        return None, StaleLockWarning in kinds
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
    return meta["epoch"], StaleLockWarning in kinds


def test_kill9_at_random_moments(tmp_path):
    rng = random.Random(SEED)
    scenarios = []
    for keep in (1, 2):
        base = tmp_path / f"keep{keep}"
        base.mkdir()
        scenarios.append({
            "keep": keep, "dir": str(base / "backup"),
            "record": str(base / "completed.txt"), "phase": str(base / "phase.txt"),
            "stderr": str(base / "writer.stderr"),
            "saves": 0, "unrecorded_runs": 0,
        })

    phases = collections.Counter()
    kills = kills_after_save = stale_warnings = early_kills = loaded_none = 0
    started = time.monotonic()
    for i in range(N_KILLS):
        sc = scenarios[i % 2]
        first_runs = i < 4  # the first two runs in each directory
        jitter = first_runs or rng.random() < 0.6
        if os.path.exists(sc["phase"]):
            os.unlink(sc["phase"])  # a kill before the writer sets one = "startup"
        with open(sc["stderr"], "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, WRITER, sc["dir"], sc["record"], sc["phase"],
                 str(sc["keep"]), str(rng.randrange(2**31)), "1" if jitter else "0"],
                stdout=subprocess.PIPE, stderr=err)
        try:
            if not first_runs and rng.random() < 0.1:
                # Kill during start-up, open() (lock takeover, cleanup of the
                # previous victim's leftovers) or load().
                time.sleep(rng.uniform(0.0, 0.2))
                early_kills += 1
            else:
                line = proc.stdout.readline()
                if line.strip() != b"ready":
                    proc.kill()
                    proc.wait()
                    with open(sc["stderr"]) as f:
                        pytest.fail(f"writer failed to start: {f.read()[-3000:]}")
                # Spread over several saves, so kills hit every step of a save;
                # the first runs die in their first save, before any completed.
                if not first_runs:
                    time.sleep(rng.uniform(0.0, 0.25))
            assert proc.poll() is None, "writer exited on its own"
            proc.kill()
        finally:
            proc.wait()
            proc.stdout.close()
        kills += 1
        try:
            with open(sc["phase"], "rb") as f:
                raw = f.read()
            phases[raw[:32].strip().decode() or "startup"] += 1
            if raw[32:64].strip() == b"rmtree":
                phases["during-rmtree"] += 1
        except FileNotFoundError:
            phases["startup"] += 1
        n_saves = len(_completed_saves(sc["record"]))
        if n_saves:
            kills_after_save += 1
        # Runs since (and including) the last one that recorded a save.
        sc["unrecorded_runs"] = 1 if n_saves > sc["saves"] else sc["unrecorded_runs"] + 1
        sc["saves"] = n_saves
        epoch, warned = _check_after_kill(sc["dir"], sc["keep"], sc["record"],
                                          sc["unrecorded_runs"])
        loaded_none += epoch is None
        stale_warnings += warned
    elapsed = time.monotonic() - started

    report = (f"{kills} kills in {elapsed:.0f} s, {kills_after_save} after a completed "
              f"save, {loaded_none} with nothing to load, {early_kills} early, "
              f"{stale_warnings} stale-lock takeovers, phases: {dict(phases)}")
    print(report)
    # Guard against a test that silently stops testing anything.
    assert kills >= 200, report
    assert kills_after_save >= kills - 10, report
    assert loaded_none >= 1, report  # the "nothing completed yet" case ran
    assert stale_warnings >= kills // 2, report
    saves = [len(_completed_saves(sc["record"])) for sc in scenarios]
    assert min(saves) >= 100, (saves, report)
    # Kills landed in the middle of writing, syncing, publishing and pruning.
    for phase in ("write", "write-2nd-half", "fsync", "fsync-dir",
                  "publish-rename", "trash-rename", "during-rmtree"):
        assert phases[phase] >= 2, (phase, report)
