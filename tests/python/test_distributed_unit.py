"""The distributed parts that need no second process: agreements, shims, reads.

The other worker is simulated by a Cluster whose exchanges answer with
given values (`Peers`); the store reads are made on real checkpoints.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import keras

import kerasbackup
from kerasbackup import distributed, shims
from kerasbackup.errors import PeerLostError, ResumeMismatchError
from kerasbackup.store import (
    CheckpointStore, CorruptCheckpointError, NoCheckpointError, load_published)

import helpers_training as ht


class Peers(distributed.Cluster):
    """Worker `rank` of 2; the other one's answers come from `answers`, in order."""

    def __init__(self, rank, answers=()):
        super().__init__(rank, 2, timeout=5)
        self.answers = list(answers)
        self.sent = []

    def broadcast(self, obj):
        self.sent.append(("broadcast", obj))
        return obj if self.is_chief else self.answers.pop(0)

    def allgather(self, obj):
        self.sent.append(("allgather", obj))
        other = self.answers.pop(0)
        return [obj, other] if self.is_chief else [other, obj]


def save_checkpoint(backup_dir, epoch=1, batch=2):
    with CheckpointStore(backup_dir) as store:
        return store.save({"a": np.arange(4.0)}, {"m": 1}, epoch=epoch, batch=batch)


# ------------------------------------------------------------------ reads


def test_load_published_reads_without_lock_or_marker_and_changes_nothing(tmp_path):
    d = str(tmp_path / "b")
    info = save_checkpoint(d)
    os.unlink(os.path.join(d, ".lock"))
    before = sorted(os.listdir(d)), {n: os.stat(os.path.join(d, n)).st_mtime_ns
                                     for n in os.listdir(d)}
    arrays, meta, got = load_published(d, info["seq"])
    assert np.array_equal(arrays["a"], np.arange(4.0)) and meta == {"m": 1}
    assert (got["seq"], got["epoch"], got["batch"]) == (info["seq"], 1, 2)
    after = sorted(os.listdir(d)), {n: os.stat(os.path.join(d, n)).st_mtime_ns
                                    for n in os.listdir(d)}
    assert after == before  # no lock file, nothing created or touched


def test_load_published_refuses_missing_and_damaged_checkpoints(tmp_path):
    d = str(tmp_path / "b")
    with pytest.raises(NoCheckpointError, match="does not exist"):
        load_published(d, 1)
    assert not os.path.exists(d)
    info = save_checkpoint(d)
    with pytest.raises(NoCheckpointError, match="no checkpoint ckpt-0000000009"):
        load_published(d, 9)
    with open(os.path.join(info["path"], "arrays.bin"), "r+b") as f:
        f.write(b"\xff")
    with pytest.raises(CorruptCheckpointError, match="checksum mismatch"):
        load_published(d, info["seq"])


# --------------------------------------------------------- the resume point


def test_a_worker_loads_the_checkpoint_the_chief_chose(tmp_path):
    d = str(tmp_path / "b")
    info = save_checkpoint(d)
    chief_point = distributed.checkpoint_identity(info)
    peers = Peers(1, answers=[chief_point, None])
    loaded = distributed.load_agreed(
        peers, lambda: pytest.fail("only the chief loads this way"),
        lambda seq: load_published(d, seq), d)
    assert loaded[2]["seq"] == info["seq"]
    assert peers.sent[-1] == ("allgather", None)  # told the others it succeeded


def test_a_worker_loads_the_checkpoint_the_chief_chose_from_a_url():
    # The chief holds the object store's lease; a worker reads what it chose
    # without the lease, and agrees on the same checkpoint.
    import secrets

    from kerasbackup.store import ObjectCheckpointStore

    url = f"memory://kb-test/{secrets.token_hex(6)}/run"
    with ObjectCheckpointStore(url) as chief:
        chief.save({"a": np.arange(4.0)}, {"m": 1}, epoch=1, batch=2)
        _, _, chief_info = chief.load()
        peers = Peers(1, answers=[distributed.checkpoint_identity(chief_info), None])
        arrays, meta, info = distributed.load_agreed(
            peers, lambda: pytest.fail("only the chief loads this way"),
            lambda seq: load_published(url, seq), url)
    assert info["seq"] == chief_info["seq"] and meta == {"m": 1}
    assert np.array_equal(arrays["a"], np.arange(4.0))
    assert peers.sent[-1] == ("allgather", None)


def test_a_worker_that_sees_another_checkpoint_stops_every_worker(tmp_path):
    d = str(tmp_path / "b")
    info = save_checkpoint(d)
    elsewhere = dict(distributed.checkpoint_identity(info), created="2020-01-01T00:00:00Z")
    peers = Peers(1, answers=[elsewhere, None])
    with pytest.raises(ResumeMismatchError, match="share"):
        distributed.load_agreed(peers, None, lambda seq: load_published(d, seq), d)
    assert peers.sent[-1][0] == "allgather" and "ResumeMismatchError" in peers.sent[-1][1]


def test_a_chief_that_cannot_load_stops_every_worker(tmp_path):
    d = str(tmp_path / "b")
    # The chief's side: its own error, after telling the others.
    chief = Peers(0, answers=[None])

    def fails():
        raise CorruptCheckpointError("all damaged", d)

    with pytest.raises(CorruptCheckpointError, match="all damaged"):
        distributed.load_agreed(chief, fails, None, d)
    assert chief.sent[0] == ("broadcast", {"error": True})
    # A worker's side: a clear error naming the chief's.
    worker = Peers(1, answers=[{"error": True}, "CorruptCheckpointError: all damaged"])
    with pytest.raises(ResumeMismatchError,
                       match=r"rank 1: loading the checkpoint failed on the chief "
                             r"\(rank 0\).*CorruptCheckpointError: all damaged"):
        distributed.load_agreed(worker, None, lambda seq: pytest.fail("nothing to load"), d)


def test_no_checkpoint_anywhere_is_a_fresh_start():
    worker = Peers(1, answers=[None, None])
    assert distributed.load_agreed(worker, None, None, "/nowhere") is None


# ------------------------------------------------------------ data shares


def test_each_worker_takes_its_rank_th_share_of_a_global_batch():
    x = np.arange(16).reshape(8, 2)
    batch = (x, x[:, :1], None)
    shares = [Peers(r).share(batch) for r in (0, 1)]
    assert np.array_equal(np.concatenate([s[0] for s in shares]), x)
    assert np.array_equal(shares[1][1], x[4:, :1]) and shares[1][2] is None
    with pytest.raises(ValueError, match="7 samples cannot be split evenly among 2"):
        Peers(0).share((x[:7],))


def test_global_batches_must_split_evenly_among_the_workers():
    distributed.check_shares(64, 8, 8, 2)
    distributed.check_shares(66, 8, 9, 2)  # a last batch of 2
    with pytest.raises(ValueError, match=r"batches of 3 samples do not split evenly "
                                         r"\(batch_size=8, 67 training samples\)"):
        distributed.check_shares(67, 8, 9, 2)
    with pytest.raises(ValueError, match="batches of 9 samples"):
        distributed.check_shares(90, 9, 10, 2)
    distributed.check_shares(67, 8, 8, 2)  # steps_per_epoch leaves the last one out


# ------------------------------------------------------- stop agreement


class Agreeing(Peers):
    """Records agreements; the other worker's flags come from `flags`."""

    def __init__(self, rank, flags, chief_interval=3):
        super().__init__(rank)
        self.flags = list(flags)
        self.chief_interval = chief_interval
        self.at = []

    def agree(self, flag, proposal=0):
        self.at.append(self.batches)
        other = self.flags.pop(0)
        return bool(flag or other), (proposal if self.is_chief else self.chief_interval)


def test_workers_agree_at_the_chiefs_interval_and_stop_together():
    cluster = Agreeing(1, flags=[False, False, False, True], chief_interval=3)
    stop = distributed.StopAgreement(cluster)
    answers = []
    for batch in range(1, 12):
        cluster.batches = batch
        answers.append(stop.batch_end(False))
    # First after batch 1 (the compilation sets no pace), then every 3.
    assert cluster.at == [1, 4, 7, 10]
    assert answers == [False] * 9 + [True, True]
    assert stop.agreed_at is not None
    assert stop.requested(False) is True
    assert stop.now(False) is True  # already agreed: no further round
    assert cluster.at == [1, 4, 7, 10]


def test_the_chief_proposes_about_a_second_of_batches():
    cluster = Agreeing(0, flags=[False] * 3)
    stop = distributed.StopAgreement(cluster, seconds=1e9, max_interval=50)
    cluster.batches = 1
    stop.batch_end(False)
    assert stop.interval == 50  # fast batches: capped


def test_one_worker_answers_its_own_flag_at_every_hook():
    stop = distributed.StopAgreement(distributed.LocalCluster())
    assert stop.batch_end(False) is False and stop.batch_end(True) is True
    assert stop.requested(True) is True and stop.now(False) is False
    assert stop.agreements == 0


def test_raise_together_raises_everywhere_if_anyone_failed():
    Peers(0, answers=[None]).raise_together(None)  # nobody failed
    with pytest.raises(ResumeMismatchError, match="failed on rank 1.*KeyError"):
        Peers(0, answers=["KeyError: 'x'"]).raise_together(None, "the restore")
    with pytest.raises(KeyError):
        Peers(1, answers=[None]).raise_together(KeyError("x"))


# -------------------------------------------------------------- lost peers


def test_lost_peer_errors_say_what_to_do():
    err = distributed.lost_peer(1, "the stop agreement", 60.0, RuntimeError(
        "Graph execution error:\n\nSocket closed\nmore"))
    assert isinstance(err, PeerLostError) and err.rank == 1 and err.timeout == 60.0
    assert str(err).startswith(
        "rank 1: lost contact with another worker during the stop agreement "
        "(RuntimeError: Socket closed). A worker has died or hangs (waits are "
        "bounded by 60 s). Stop all workers and start them again")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF errors")
def test_tf_collective_errors_are_lost_peers_and_others_are_not():
    import tensorflow as tf

    assert distributed.is_tf_peer_error(tf.errors.UnavailableError(None, None, "closed"))
    assert distributed.is_tf_peer_error(tf.errors.DeadlineExceededError(None, None, "t"))
    assert distributed.is_tf_peer_error(
        tf.errors.InternalError(None, None, "[[{{node CollectiveReduceV2}}]]"))
    assert not distributed.is_tf_peer_error(tf.errors.InvalidArgumentError(None, None, "x"))
    assert not distributed.is_tf_peer_error(ValueError("Collective"))


def test_jax_errors_for_a_lost_peer_are_lost_peers_and_others_are_not():
    class XlaRuntimeError(RuntimeError):
        pass

    assert distributed.is_jax_peer_error(XlaRuntimeError("UNAVAILABLE: heartbeat timeout"))
    assert not distributed.is_jax_peer_error(XlaRuntimeError("INVALID_ARGUMENT: shape"))
    # jax 0.7.1's multi-host device_put (in evaluate()) raises this one as ValueError.
    assert distributed.is_jax_peer_error(ValueError(
        "UNKNOWN: Gloo all-reduce failed: [external/gloo/gloo/transport/tcp/pair.cc:525] "
        "Read error [127.0.0.1]:6843: Connection reset by peer"))
    assert not distributed.is_jax_peer_error(ValueError("Connection reset by peer"))
    assert not distributed.is_jax_peer_error(RuntimeError("Gloo all-reduce failed"))


def test_peer_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("KERASBACKUP_PEER_TIMEOUT", raising=False)
    assert distributed.peer_timeout() == distributed.DEFAULT_TIMEOUT
    monkeypatch.setenv("KERASBACKUP_PEER_TIMEOUT", "12.5")
    assert distributed.peer_timeout() == 12.5
    monkeypatch.setenv("KERASBACKUP_PEER_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="KERASBACKUP_PEER_TIMEOUT.*Received: 'soon'"):
        distributed.peer_timeout()


def test_one_process_is_a_local_cluster():
    model = ht.make_model()
    cluster = distributed.cluster_for(model)
    assert (cluster.rank, cluster.world, cluster.is_chief) == (0, 1, True)


# ------------------------------------------------------------------ shims


def test_shims_follow_the_keras_version_and_the_environment(monkeypatch):
    monkeypatch.delenv("KERASBACKUP_KERAS_SHIMS", raising=False)
    broken = "%d.%d.0" % shims.LAST_BROKEN
    fixed = "%d.%d.0" % (shims.LAST_BROKEN[0], shims.LAST_BROKEN[1] + 1)
    assert shims.needed("3.15.1", "tensorflow")
    assert shims.needed(broken + ".dev2026", "tensorflow")
    assert not shims.needed(fixed, "tensorflow")
    assert not shims.needed("3.15.1", "jax")
    monkeypatch.setenv("KERASBACKUP_KERAS_SHIMS", "0")
    assert not shims.needed("3.15.1", "tensorflow")
    monkeypatch.setenv("KERASBACKUP_KERAS_SHIMS", "1")
    assert shims.needed(fixed, "jax")
    monkeypatch.setenv("KERASBACKUP_KERAS_SHIMS", "yes")
    with pytest.raises(ValueError, match="KERASBACKUP_KERAS_SHIMS.*Received: 'yes'"):
        shims.needed()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF shims")
def test_shims_install_and_come_off_once_every_apply_is_undone(monkeypatch):
    monkeypatch.delenv("KERASBACKUP_KERAS_SHIMS", raising=False)
    assert shims.installed() == []
    assert shims.apply() == sorted(shims.NAMES)
    assert shims.apply(["mwms_scalar_reduce"]) == sorted(shims.NAMES)
    shims.remove()
    assert shims.installed() == ["mwms_scalar_reduce"]
    shims.remove(["mwms_scalar_reduce"])
    assert shims.installed() == []
    with pytest.raises(ValueError, match="Received: 'nope'"):
        shims.apply(["nope"])
    monkeypatch.setenv("KERASBACKUP_KERAS_SHIMS", "0")
    assert shims.apply() == [] and shims.installed() == []


# -------------------------------------------------------------- fingerprint


def test_checkpoints_record_workers_and_replicas(tmp_path):
    x, y = ht.make_data(40)
    backup = str(tmp_path / "b")
    kerasbackup.fit(ht.make_model(), x, y, batch_size=8, epochs=1, verbose=0,
                    callbacks=[kerasbackup.BackupAndRestore(backup, delete_checkpoint=False)])
    with CheckpointStore(backup) as store:
        _, meta, _ = store.load()
    assert meta["fingerprint"]["workers"] == 1
    assert meta["fingerprint"]["replicas"] == 1


# keras3's R package makes a Keras tensor, which starts JAX's backend, as
# soon as keras or jax is imported: reticulate runs such R hooks after an
# import on the main thread. The job imitates that hook; jax.distributed
# must be up before it runs.
_JAX_START_JOB = r"""
import builtins, socket, sys, threading

original_import = builtins.__import__
hooked = []
depth = [0]

def import_with_hook(name, *args, **kwargs):
    depth[0] += 1  # as reticulate, no hooks inside a nested import
    try:
        module = original_import(name, *args, **kwargs)
    finally:
        depth[0] -= 1
    top = name.split(".")[0]
    if (top in ("jax", "keras") and not hooked and depth[0] == 0
            and threading.current_thread() is threading.main_thread()):
        hooked.append(top)
        import jax
        jax.devices()
        print("hook ran", flush=True)
    return module

builtins.__import__ = import_with_hook
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
from kerasbackup.cluster_start import initialize_jax
initialize_jax(f"127.0.0.1:{port}", 1, 0, timeout=30, init_timeout=30,
               collectives_host="127.0.0.1")
import jax
print("processes", jax.process_count(), "keras" in sys.modules, flush=True)
"""


def test_initialize_jax_starts_jax_before_keras_is_imported(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ht.INST_PYTHON,
               JAX_PLATFORMS="cpu", KERAS_HOME=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", _JAX_START_JOB], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    # Keras comes in for the seed agreement, after JAX's cluster started.
    assert run.stdout.splitlines() == ["hook ran", "processes 1 True"]


def test_keras_backend_is_read_without_importing_keras(tmp_path, monkeypatch):
    from kerasbackup import cluster_start

    monkeypatch.setitem(sys.modules, "keras", None)  # not imported
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert cluster_start.keras_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text('{"backend": "torch"}')
    assert cluster_start.keras_backend() == "torch"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert cluster_start.keras_backend() == "jax"
