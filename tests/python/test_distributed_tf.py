"""Distributed training on the TensorFlow engines: one writer, exact resumes.

MirroredStrategy runs in one process over 2 logical CPUs;
MultiWorkerMirroredStrategy runs 2 worker processes whose TF_CONFIG names
127.0.0.1 only. The workers are dist_worker.py (see its docstring for the
model, data and files); helpers_dist.Group launches them, waits for states
they write and bounds every wait. Every comparison is bit for bit: on the
CPU both strategies are deterministic for a fixed number of replicas (the
all-reduce sums in a fixed order), so no tolerance is needed.
"""

import os
import signal

import numpy as np
import pytest

import helpers_dist as hd
import helpers_training as ht

pytestmark = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="the TensorFlow strategies need the tensorflow backend")

# Every metric `count` accumulator after 3 batches of 8 samples, per replica:
# each of the 2 replicas saw 4 samples a batch. A batch handed whole to
# every replica would give 24 each.
ROWS_AFTER_3_BATCHES = [12.0, 12.0]
STEPS = 24  # 3 epochs of 8 batches


def assert_same_final(group, rank, reference, ref_rank=None):
    ht.assert_same_npz(group.final(rank), reference.final(rank if ref_rank is None else ref_rank))
    assert group.result(rank)["numpy_rng"] == reference.result(
        rank if ref_rank is None else ref_rank)["numpy_rng"], \
        f"rank {rank}: its own NumPy generator state differs"


def assert_replica_rows(result):
    found = result["replica_rows"]
    assert found["position"] == [0, 3]
    assert found["rows"], "no metric accumulators in the checkpoint"
    for path, rows in found["rows"].items():
        assert rows == ROWS_AFTER_3_BATCHES, f"{path}: {rows}"


def assert_only_chief_wrote(group, *directories):
    """Rank 0 wrote into each directory and took its lock; the others did nothing there."""
    chief = group.audit(0)
    for d in directories:
        assert hd.writes_under(chief, d), f"the audit saw no write of the chief in {d}"
    assert any(r[0] == "fcntl.flock" for r in chief), "the chief took no lock"
    for rank in range(1, group.world):
        records = group.audit(rank)
        for d in directories:
            assert not hd.writes_under(records, d), \
                f"rank {rank} wrote into {d}: {hd.writes_under(records, d)[:5]}"
        assert not [r for r in records if r[0] == "fcntl.flock"], f"rank {rank} took a lock"


# ------------------------------------------------------------ MirroredStrategy


def test_mirrored_strategy_kill_at_any_moment_then_resume_is_exact(tmp_path):
    rng = ht.seeded_rng("mirrored kill")
    kill_at = rng.randint(4, STEPS - 2)
    print(f"kill -9 after batch {kill_at} (or later, once a checkpoint is out)")
    ref = hd.Group("tf-mirrored", 1, str(tmp_path / "ref"), str(tmp_path / "ev-ref"),
                   first_run=True)
    ref.expect([0])
    assert_replica_rows(ref.result(0))

    # The same script, killed once its first checkpoint is out; then run
    # again with another seed: whatever it restores must come from backup_dir.
    backup = str(tmp_path / "backup")
    crash = hd.Group("tf-mirrored", 1, backup, str(tmp_path / "ev-crash"))
    crash.wait_for(lambda: ht.latest_checkpoint(backup) is not None, "a checkpoint")
    crash.wait_progress(0, kill_at)
    crash.kill(0)
    resumed = hd.Group("tf-mirrored", 1, backup, str(tmp_path / "ev-resume"), seed=7)
    resumed.expect([0])
    assert_same_final(resumed, 0, ref)


# --------------------------------------------------- MultiWorkerMirroredStrategy


@pytest.fixture(scope="module")
def mwms_reference(tmp_path_factory):
    """An uninterrupted 2-worker run (plus the tripwire and a plain model.fit)."""
    d = tmp_path_factory.mktemp("mwms-ref")
    group = hd.Group("tf-mwms", 2, str(d / "backup"), str(d / "events"), first_run=True)
    group.expect([0, 0])
    group.backup_dir = str(d / "backup")
    return group


def test_mwms_workers_train_the_same_model_and_only_the_chief_writes(mwms_reference):
    g = mwms_reference
    # Both workers hold the same model, optimizer, history and callbacks...
    ht.assert_same_npz(g.final(0), g.final(1))
    # ...but each its own NumPy generator (seeded 1000 + rank).
    assert g.result(0)["numpy_rng"] != g.result(1)["numpy_rng"]
    assert_replica_rows(g.result(0))
    assert_only_chief_wrote(g, g.backup_dir, g.backup_dir + "-plain")
    # Keras' own model.fit with both shims and our callback: the same weights.
    assert g.result(0)["plain_fit"] == g.result(1)["plain_fit"]


def test_keras_20585_still_needs_the_shims(mwms_reference):
    """Keras' model.fit under MWMS without our shims fails as issue #20585 says.

    When this fails because Keras no longer fails, Keras is fixed: lower
    kerasbackup.shims.LAST_BROKEN below that version (the shims then switch
    themselves off) and remove them once older versions are dropped.
    """
    expected = {"mwms_symbolic_build": "Attempt to convert a value (PerReplica",
                "mwms_scalar_reduce": "Invalid reduction dimension 0"}
    for rank in (0, 1):
        found = mwms_reference.result(rank)["tripwire"]
        for name, text in expected.items():
            assert text in found[name], (
                f"rank {rank}: without the shim {name}, Keras' model.fit no longer "
                f"fails with {text!r} but with {found[name]!r}: if it trained, "
                "keras-team/keras#20585 is fixed in this Keras; lower "
                "kerasbackup.shims.LAST_BROKEN.")


def test_mwms_preemption_then_a_killed_worker_then_a_restart_is_exact(mwms_reference,
                                                                       tmp_path):
    rng = ht.seeded_rng("mwms preempt and kill")
    signalled, victim = rng.randrange(2), rng.randrange(2)
    signal_at, kill_at = rng.randint(1, 10), rng.randint(1, 8)
    print(f"SIGTERM to rank {signalled} after its batch {signal_at}; "
          f"kill -9 of rank {victim} after its batch {kill_at} of the resumed run")
    backup = str(tmp_path / "backup")

    # A preemption signal on one worker stops both at the same batch, once
    # the chief has published.
    pre = hd.Group("tf-mwms", 2, backup, str(tmp_path / "ev-pre"))
    pre.wait_progress(signalled, signal_at)
    pre.send(signalled, signal.SIGTERM)
    pre.expect([42, 42])
    stops = [pre.result(r)["preempted"] for r in (0, 1)]
    assert stops[0] == stops[1], stops
    assert ht.latest_checkpoint(backup) == tuple(stops[0])
    assert_only_chief_wrote(pre, backup)

    # A worker killed at any moment: the other ends with PeerLostError.
    crash = hd.Group("tf-mwms", 2, backup, str(tmp_path / "ev-crash"), seed=11)
    crash.wait_progress(victim, kill_at)
    crash.kill(victim)
    survivor = 1 - victim
    codes = crash.wait()
    if codes[survivor] != hd.EXIT_PEER_LOST:
        crash.fail(f"the survivor ended with {codes[survivor]}, not PeerLostError")
    lost = crash.result(survivor)
    assert lost["error"] == "PeerLostError"
    assert "Stop all workers and start them again" in lost["message"]

    # Restarting all workers resumes bit-identically, each worker its own generators.
    resumed = hd.Group("tf-mwms", 2, backup, str(tmp_path / "ev-resume"), seed=13)
    resumed.expect([0, 0])
    for rank in (0, 1):
        assert_same_final(resumed, rank, mwms_reference)
    assert_only_chief_wrote(resumed, backup)
    assert not os.path.exists(backup)  # delete_checkpoint, by the chief
