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


def _check_after_kill(d, keep, record_file):
    """Verifies backup_dir after a kill; returns (loaded epoch, stale warned)."""
    done = _completed_saves(record_file)
    # Every checkpoint name on disk is a complete, verifiable checkpoint.
    infos = backup_info(d)
    bad = [i for i in infos if not i["verified"]]
    assert not bad, bad
    # Killed between publish and prune, there can be one more than `keep`.
    assert len(infos) <= keep + 1, [i["path"] for i in infos]

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
        # Durable: the last completed save or the next one, published but not
        # yet recorded when the kill came.
        assert info["seq"] in (last_seq, last_seq + 1), (info, done[-1])
        if info["seq"] == last_seq:
            assert meta["epoch"] == last_epoch
    else:
        assert info["seq"] == 1
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
        })

    phases = collections.Counter()
    kills = kills_after_save = stale_warnings = early_kills = 0
    started = time.monotonic()
    for i in range(N_KILLS):
        sc = scenarios[i % 2]
        jitter = rng.random() < 0.6
        with open(sc["stderr"], "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, WRITER, sc["dir"], sc["record"], sc["phase"],
                 str(sc["keep"]), str(rng.randrange(2**31)), "1" if jitter else "0"],
                stdout=subprocess.PIPE, stderr=err)
        try:
            if rng.random() < 0.1:
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
                # Spread over several saves, so kills hit every step of a save.
                time.sleep(rng.uniform(0.0, 0.25))
            assert proc.poll() is None, "writer exited on its own"
            proc.kill()
        finally:
            proc.wait()
        kills += 1
        with open(sc["phase"], "rb") as f:
            phases[f.read().strip().decode() or "startup"] += 1
        if _completed_saves(sc["record"]):
            kills_after_save += 1
        _, warned = _check_after_kill(sc["dir"], sc["keep"], sc["record"])
        stale_warnings += warned
    elapsed = time.monotonic() - started

    report = (f"{kills} kills in {elapsed:.0f} s, {kills_after_save} after a completed "
              f"save, {stale_warnings} stale-lock takeovers, phases: {dict(phases)}")
    print(report)
    # Guard against a test that silently stops testing anything.
    assert kills >= 200, report
    assert kills_after_save >= kills - 10, report
    assert stale_warnings >= kills // 2, report
    saves = [len(_completed_saves(sc["record"])) for sc in scenarios]
    assert min(saves) >= 100, (saves, report)
    # Kills landed in the middle of writing, syncing, publishing and pruning.
    for phase in ("write", "write-2nd-half", "fsync", "fsync-dir",
                  "publish-rename", "trash-rename", "rmtree"):
        assert phases[phase] >= 2, (phase, report)
