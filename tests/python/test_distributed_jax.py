"""Distributed training on JAX: keras.distribution.DataParallel, one writer, exact resumes.

One process with 2 host devices (XLA_FLAGS=--xla_force_host_platform_device_count=2),
and 2 processes joined by jax.distributed (kerasbackup.distributed.initialize_jax:
coordinator and gloo collectives on 127.0.0.1). The workers are
dist_worker.py; helpers_dist launches them and bounds every wait. Every
comparison is bit for bit: on the CPU, XLA's all-reduce over a fixed number
of devices sums in a fixed order, so no tolerance is needed.
"""

import pytest

import helpers_dist as hd

# Metric accumulators are replicated under DataParallel (not one per
# device): after 3 global batches of 8 samples, each count is 24.
ROWS = [24.0]
STEPS = 24  # 3 epochs of 8 batches


def test_dataparallel_one_process_kill_at_any_moment_then_resume_is_exact(tmp_path):
    hd.kill_and_resume_one_process("jax-dp", tmp_path, ROWS, STEPS)


@pytest.fixture(scope="module")
def jax_reference(tmp_path_factory):
    return hd.reference_run("jax-mp", tmp_path_factory.mktemp("jax-ref"))


def test_jax_workers_train_the_same_model_and_only_the_chief_writes(jax_reference):
    hd.assert_reference(jax_reference, ROWS)


def test_jax_preemption_then_a_killed_worker_then_a_restart_is_exact(jax_reference,
                                                                     tmp_path):
    # A lost peer ends the survivor with PeerLostError (a failed gloo
    # all-reduce, one of our bounded waits) or, when JAX's coordination
    # service notices first (always when rank 0, the coordinator, dies), by
    # JAX's own abort; both are accepted, and bounded.
    print("the survivor:", hd.preempt_kill_and_restart("jax-mp", jax_reference, tmp_path))


def test_jax_a_frozen_worker_ends_the_other_within_the_bound(tmp_path):
    # Heartbeats and our waits are bounded by PEER_TIMEOUT.
    print("the survivor:", hd.frozen_peer("jax-mp", tmp_path))
