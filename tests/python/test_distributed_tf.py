"""Distributed training on the TensorFlow engines: one writer, exact resumes.

MirroredStrategy runs in one process over 2 logical CPUs;
MultiWorkerMirroredStrategy runs 2 worker processes whose TF_CONFIG names
127.0.0.1 only. The workers are dist_worker.py (see its docstring for the
model, data and files); helpers_dist launches them, waits for states they
write and bounds every wait. Every comparison is bit for bit: on the CPU
both strategies are deterministic for a fixed number of replicas (the
all-reduce sums in a fixed order), so no tolerance is needed.
"""

import pytest

import helpers_dist as hd

# Every metric `count` accumulator after 3 batches of 8 samples, one row per
# replica: each of the 2 replicas saw 4 samples a batch. A batch handed
# whole to every replica would give 24 each.
ROWS = [12.0, 12.0]
STEPS = 24  # 3 epochs of 8 batches


def test_mirrored_strategy_kill_at_any_moment_then_resume_is_exact(tmp_path):
    hd.kill_and_resume_one_process("tf-mirrored", tmp_path, ROWS, STEPS)


@pytest.fixture(scope="module")
def mwms_reference(tmp_path_factory):
    """An uninterrupted 2-worker run (plus the tripwire and a plain model.fit)."""
    return hd.reference_run("tf-mwms", tmp_path_factory.mktemp("mwms-ref"))


def test_mwms_workers_train_the_same_model_and_only_the_chief_writes(mwms_reference):
    g = mwms_reference
    # The same model, optimizer, history and callbacks on both workers, each
    # its own NumPy generator (seeded 1000 + rank); the chief alone wrote,
    # also for Keras' own model.fit with both shims and our callback...
    hd.assert_reference(g, ROWS, g.backup_dir + "-plain")
    # ...which trained the same weights on both workers.
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
    # TF raises in Python for a lost peer: always our PeerLostError.
    assert hd.preempt_kill_and_restart("tf-mwms", mwms_reference, tmp_path) == "PeerLostError"


def test_mwms_a_frozen_worker_ends_the_other_within_the_bound(tmp_path):
    # The strategy's collectives and ours time out after PEER_TIMEOUT.
    assert hd.frozen_peer("tf-mwms", tmp_path) == "PeerLostError"
