"""Who writes in a distributed fit(), and how the workers agree, in bounded time.

Data-parallel training runs one copy of the model in each worker process.
For crash-proof, exact resumes there is one writer: the chief (rank 0)
alone opens backup_dir for writing, takes its lock, saves and publishes.
The other workers never write into it. They read the checkpoint the chief
chose, and they take part in what a save computes together (per-replica
metric sums under tf.distribute, every worker's random state).

A Cluster knows this process' rank and the number of workers, and carries
the few agreements the callback and the driver need:

- `broadcast(obj)`: the chief's JSON value, on every worker;
- `allgather(obj)`: every worker's JSON value, in rank order;
- `agree(flag, proposal)`: whether any worker passed True, and the chief's
  proposal (how the workers stop together after a preemption signal);
- `raise_together(error)`: all workers raise if any of them failed.

Each one waits at most `timeout` seconds (`KERASBACKUP_PEER_TIMEOUT`,
default 600) and then raises PeerLostError. `peer_errors()` turns the
engines' own errors for a lost peer (in the train step's collectives) into
PeerLostError too.

Engines: `tf.distribute.MultiWorkerMirroredStrategy` (TFCluster, through
the strategy's all-reduce with CommunicationOptions(timeout_seconds)) and
`jax.distributed` (JaxCluster, through the coordination service's key-value
store, whose reads take a timeout). One process that drives several
devices (MirroredStrategy, a one-process JAX DataParallel) is the
LocalCluster: it has nobody to agree with.
"""

import contextlib
import json
import math
import os
import time

import numpy as np

import keras

from kerasbackup.errors import PeerLostError, ResumeMismatchError

from kerasbackup.cluster_start import DEFAULT_TIMEOUT, initialize_jax, peer_timeout  # noqa: F401

#: Stop agreements happen about this often (seconds of training); see StopAgreement.
AGREE_SECONDS = 1.0


_TELLING = ("closed", "Closed", "reset", "Deadline", "deadline", "timed out",
            "aborted", "Aborted", "unavailable", "Unavailable", "refused",
            "failed", "heartbeat")


def _cause(error):
    """The error's class and its most telling line (engines bury it)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = next((x for x in lines if any(w in x for w in _TELLING)),
                lines[0] if lines else "")
    return f"{type(error).__name__}: {line[:240]}"


def lost_peer(rank, what, timeout, error):
    """The PeerLostError for `rank`, which lost a peer during `what` (a cause `error`)."""
    bound = f" (waits are bounded by {timeout:g} s)" if timeout else ""
    return PeerLostError(
        f"rank {rank}: lost contact with another worker during {what} "
        f"({_cause(error)}). A worker has died or hangs{bound}. Stop all "
        "workers and start them again: they resume from the last published "
        "checkpoint.", rank=rank, timeout=timeout)


class LocalCluster:
    """One worker: every agreement is with itself."""

    engine = "local"
    rank = 0
    world = 1
    is_chief = True
    timeout = None

    def broadcast(self, obj):
        return obj

    def allgather(self, obj):
        return [obj]

    def agree(self, flag, proposal=0):
        return bool(flag), int(proposal)

    def raise_together(self, error, what="the restore"):
        if error is not None:
            raise error

    @contextlib.contextmanager
    def peer_errors(self, what=None):
        yield

    def share(self, batch):
        return batch


class Cluster(LocalCluster):
    """What the multi-worker clusters share; subclasses move the bytes."""

    def __init__(self, rank, world, timeout):
        self.rank = int(rank)
        self.world = int(world)
        self.is_chief = self.rank == 0
        self.timeout = float(timeout)

    def broadcast(self, obj):
        raise NotImplementedError

    def allgather(self, obj):
        raise NotImplementedError

    def agree(self, flag, proposal=0):
        """(any worker's flag, the chief's proposal), the same on every worker."""
        values = self.allgather([bool(flag), int(proposal)])
        return any(v[0] for v in values), int(values[0][1])

    def raise_together(self, error, what="the restore"):
        """Raises on every worker if `error` is not None on any of them.

        A worker raises its own error; the others raise ResumeMismatchError
        naming the first worker that failed, so that none of them goes on
        to wait in a collective for a worker that has stopped.
        """
        text = None if error is None else f"{type(error).__name__}: {error}"
        texts = self.allgather(text)
        if error is not None:
            raise error
        failed = [(r, t) for r, t in enumerate(texts) if t is not None]
        if failed:
            r, t = failed[0]
            who = "the chief (rank 0)" if r == 0 else f"rank {r}"
            raise ResumeMismatchError(
                f"rank {self.rank}: {what} failed on {who}, so all workers "
                f"stop: {t}")

    @contextlib.contextmanager
    def peer_errors(self, what="training"):
        """Turns the engine's errors for a lost peer into PeerLostError."""
        try:
            yield
        except Exception as e:
            if not self.is_peer_error(e):
                raise
            raise lost_peer(self.rank, what, self.timeout, e) from e

    def is_peer_error(self, error):
        """Whether `error`, raised by the engine, says a peer was lost."""
        return False

    def share(self, batch):
        """This worker's rows of a global batch: the rank-th of `world` equal parts."""
        def cut(v):
            if v is None:
                return None
            n = int(v.shape[0])
            if n % self.world:
                raise ValueError(
                    f"A batch of {n} samples cannot be split evenly among "
                    f"{self.world} workers.")
            per = n // self.world
            return v[self.rank * per:(self.rank + 1) * per]
        return keras.tree.map_structure(cut, batch)


# ------------------------------------------------------------- TensorFlow


_TF_LOST = ("UnavailableError", "DeadlineExceededError", "CancelledError",
            "AbortedError")


class TFCluster(Cluster):
    """Workers of a tf.distribute.MultiWorkerMirroredStrategy.

    The agreements are SUM all-reduces of int64 vectors in replica context,
    each worker's first local replica contributing and the others adding
    zeros, bounded by CommunicationOptions(timeout_seconds).
    """

    engine = "tensorflow"

    def __init__(self, strategy, rank, world, timeout):
        import tensorflow as tf

        super().__init__(rank, world, timeout)
        self.strategy = strategy
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=self.timeout)
        local = len(strategy.extended.worker_devices)

        def reduce_fn(x):
            def replica_fn(v):
                ctx = tf.distribute.get_replica_context()
                first = tf.equal(ctx.replica_id_in_sync_group % local, 0)
                mine = v * tf.cast(first, v.dtype)
                return ctx.all_reduce("SUM", mine, options=options)
            return strategy.run(replica_fn, args=(x,))

        self._sum_fn = tf.function(
            reduce_fn, input_signature=[tf.TensorSpec([None], tf.int64)])

    def _sum(self, vector, what):
        vector = np.asarray(vector, np.int64).reshape(-1)
        with self.peer_errors(what):
            out = self._sum_fn(vector)
            return np.asarray(self.strategy.experimental_local_results(out)[0])

    def broadcast(self, obj):
        data = json.dumps(obj).encode() if self.is_chief else b""
        size = int(self._sum([len(data)], "a broadcast")[0])
        buf = np.zeros(size, np.int64)
        if self.is_chief:
            buf[:] = np.frombuffer(data, np.uint8)
        return json.loads(bytes(self._sum(buf, "a broadcast").astype(np.uint8)))

    def allgather(self, obj):
        data = json.dumps(obj).encode()
        sizes = np.zeros(self.world, np.int64)
        sizes[self.rank] = len(data)
        sizes = self._sum(sizes, "an exchange")
        rows = np.zeros((self.world, int(sizes.max())), np.int64)
        rows[self.rank, :len(data)] = np.frombuffer(data, np.uint8)
        rows = self._sum(rows, "an exchange").reshape(self.world, -1)
        return [json.loads(bytes(rows[r, :sizes[r]].astype(np.uint8)))
                for r in range(self.world)]

    def agree(self, flag, proposal=0):
        out = self._sum([1 if flag else 0, int(proposal) if self.is_chief else 0],
                        "the stop agreement")
        return bool(out[0] > 0), int(out[1])

    def is_peer_error(self, error):
        return is_tf_peer_error(error)


def is_tf_peer_error(error):
    """Whether a TF error says a collective lost a peer (dead, hung, timed out)."""
    import tensorflow as tf

    if not isinstance(error, tf.errors.OpError):
        return False
    text = str(error)
    return type(error).__name__ in _TF_LOST or "Collective" in text or "collective" in text


def _tf_cluster(model, timeout):
    """A TFCluster for a model made under a multi-worker strategy, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    strategy = model.distribute_strategy
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    # A "chief" task, if the cluster has one, is rank 0; the workers follow.
    tasks = [("chief", i) for i in range(len(spec.get("chief", [])))]
    tasks += [("worker", i) for i in range(len(spec.get("worker", [])))]
    if len(tasks) <= 1:
        return None
    rank = tasks.index((resolver.task_type, int(resolver.task_id)))
    return TFCluster(strategy, rank, len(tasks), timeout)


# -------------------------------------------------------------------- JAX


_JAX_LOST = ("gloo", "Gloo", "DEADLINE_EXCEEDED", "UNAVAILABLE", "coordination",
             "Connection closed", "Connection reset", "heartbeat")


def _jax_client():
    # jax 0.7.1: the coordination-service client of jax.distributed is only
    # reachable through this private name; it is the one handle whose
    # waits take a timeout (multihost_utils' collectives take none).
    from jax._src import distributed as jax_distributed

    return jax_distributed.global_state.client


class JaxCluster(Cluster):
    """Processes joined by jax.distributed.

    Agreements go through the coordination service's key-value store: each
    worker sets its key and reads the others' with a bounded blocking get.
    Every worker runs the same sequence of agreements, so a process-wide
    counter names each one. A worker removes the keys it set in earlier
    rounds once it has read every worker's key of an exchange: each of them
    set that key after it had read everything before.
    """

    engine = "jax"
    _round = 0  # process-wide: each fit() continues the sequence

    def __init__(self, rank, world, timeout):
        super().__init__(rank, world, timeout)
        self.client = _jax_client()
        if self.client is None:
            raise RuntimeError("jax.distributed is not initialized")
        self._mine = []  # keys this worker set that others may still read

    def _next_key(self, what):
        JaxCluster._round += 1
        return f"kerasbackup/{JaxCluster._round}/{what}"

    def _get(self, key, what):
        ms = max(1, int(self.timeout * 1000))
        try:
            return self.client.blocking_key_value_get(key, ms)
        except Exception as e:  # XlaRuntimeError: DEADLINE_EXCEEDED, UNAVAILABLE
            raise lost_peer(self.rank, what, self.timeout, e) from e

    def _set(self, key, value):
        self.client.key_value_set(key, value)
        self._mine.append(key)

    def _forget_read(self):
        """Removes this worker's keys of the rounds before the exchange just done."""
        done, self._mine = self._mine[:-1], self._mine[-1:]
        for key in done:
            try:
                self.client.key_value_delete(key)
            except Exception:
                pass  # only memory in the coordination service

    def broadcast(self, obj):
        key = self._next_key("broadcast")
        if self.is_chief:
            self._set(key, json.dumps(obj))
        return json.loads(self._get(key, "a broadcast"))

    def allgather(self, obj):
        key = self._next_key("allgather")
        self._set(f"{key}/{self.rank}", json.dumps(obj))
        values = [json.loads(self._get(f"{key}/{r}", "an exchange"))
                  for r in range(self.world)]
        self._forget_read()
        return values

    def is_peer_error(self, error):
        return is_jax_peer_error(error)


def is_jax_peer_error(error):
    """Whether a JAX runtime error says a peer was lost (gloo, coordination service).

    jax 0.7.1 raises some of them as ValueError ("UNKNOWN: Gloo all-reduce
    failed", from a multi-host device_put such as evaluate()'s).
    """
    if type(error).__name__ in ("XlaRuntimeError", "JaxRuntimeError"):
        return any(m in str(error) for m in _JAX_LOST)
    return isinstance(error, ValueError) and "Gloo all-reduce failed" in str(error)


def _jax_cluster(timeout):
    if keras.backend.backend() != "jax":
        return None
    check_jax_distribution()
    import jax

    if jax.process_count() <= 1:
        return None
    return JaxCluster(jax.process_index(), jax.process_count(), timeout)


def check_jax_distribution():
    """Refuses a Keras distribution whose state is not on every device whole.

    A checkpoint is written from host copies of the variables; under
    DataParallel every variable is replicated, so each process holds all of
    it. Sharded variables (ModelParallel) are not supported yet.
    """
    dist = keras.distribution.distribution()
    if dist is not None and not isinstance(dist, keras.distribution.DataParallel):
        raise ValueError(
            "kerasbackup supports keras.distribution.DataParallel (variables "
            "replicated on every device), not "
            f"{type(dist).__name__}: a process cannot read a sharded variable "
            "whole to checkpoint it.")


# ------------------------------------------------------------------ choice


_LOCAL = LocalCluster()
_CLUSTERS = {}


def cluster_for(model, timeout=None):
    """The Cluster this process trains `model` in (a LocalCluster if alone).

    TensorFlow: the model's strategy, if it is a MultiWorkerMirroredStrategy
    with more than one task. JAX: jax.distributed with more than one
    process. One Cluster per strategy (TF) or per process (JAX), so that
    repeated fits share its compiled all-reduce and its round counter.
    """
    timeout = peer_timeout() if timeout is None else float(timeout)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        key = ("tensorflow", id(model.distribute_strategy))
        found = _CLUSTERS.get(key)
        if found is None or found.strategy is not model.distribute_strategy:
            found = _tf_cluster(model, timeout)
            if found is None:
                return _LOCAL
            _CLUSTERS[key] = found
    elif backend == "jax":
        found = _CLUSTERS.get("jax")
        if found is None:
            found = _jax_cluster(timeout)
            if found is None:
                return _LOCAL
            _CLUSTERS["jax"] = found
    else:
        return _LOCAL
    found.timeout = timeout
    return found


def scope(model):
    """The model's tf.distribute scope (TF), where variables are made and assigned.

    A model made under a strategy must be built, restored and assigned in
    that strategy's scope, also when fit() is called outside it (as from R
    once a `with(strategy$scope(), ...)` block has ended).
    """
    if keras.backend.backend() == "tensorflow":
        return model.distribute_strategy.scope()
    return contextlib.nullcontext()


# ------------------------------------------------------------- data shares


def check_shares(samples, batch_size, steps, world):
    """Refuses global batches that do not split into `world` equal shares.

    `samples` training samples in `steps` batches of `batch_size` (the last
    one may be smaller). Raises ValueError naming the sizes.
    """
    sizes = {int(batch_size)}
    last = int(samples) - (int(steps) - 1) * int(batch_size)
    if 0 < last < batch_size:
        sizes.add(last)
    odd = sorted(b for b in sizes if b % world)
    if odd:
        raise ValueError(
            f"kerasbackup.fit() with {world} workers splits every global batch "
            f"into {world} equal shares, but batches of {odd[0]} samples do not "
            f"split evenly (batch_size={batch_size}, {samples} training "
            f"samples). Use a batch_size and a number of samples that are "
            f"multiples of {world}, or steps_per_epoch to leave out a last, "
            "smaller batch.")


# ------------------------------------------------------------- agreements


def checkpoint_identity(info):
    """What identifies a published checkpoint across workers (from a store info)."""
    if info is None:
        return None
    return {k: info.get(k) for k in ("seq", "epoch", "batch", "created", "size_bytes")}


def load_agreed(cluster, load_chief, load_worker, backup_dir):
    """Every worker loads the checkpoint the chief chose, or all of them raise.

    `load_chief()` returns the chief's `(arrays, meta, info)` or None (no
    checkpoint); `load_worker(seq)` loads checkpoint `seq` read-only. The
    chief broadcasts its checkpoint's identity (seq, position, creation time,
    size); each worker checks that it reads the same checkpoint, which fails
    when backup_dir is not one shared directory.
    """
    if cluster.world == 1:
        return load_chief()
    loaded = error = None
    if cluster.is_chief:
        try:
            loaded = load_chief()
        except Exception as e:
            error = e
    point = cluster.broadcast(
        {"error": True} if error is not None
        else checkpoint_identity(loaded[2] if loaded else None))
    if not cluster.is_chief and point is not None and "error" not in point:
        try:
            loaded = load_worker(point["seq"])
            mine = checkpoint_identity(loaded[2] if loaded else None)
            if mine != point:
                raise ResumeMismatchError(
                    f"rank {cluster.rank} reads checkpoint {mine} in "
                    f"backup_dir '{backup_dir}', but the chief resumes from "
                    f"{point}. Every worker must see the chief's backup_dir: "
                    "put it on a file system all of them share.")
        except Exception as e:
            error = e
    cluster.raise_together(error, "loading the checkpoint")
    return loaded


class StopAgreement:
    """Stops every worker at the same batch after a preemption signal on any one.

    A signal handler only sets a flag on its own worker. With one worker
    that flag is the answer at every hook. With several, the workers compare
    their flags at the same batches: every `interval` batches, an interval
    the chief sets at each agreement from its measured batch rate, so that
    they agree about once per `seconds` of training. An agreement is an
    all-reduce (TF, about 3 ms on loopback) or a round of key-value reads
    (JAX, about 1.3 ms): once a second it costs well under 1% of training,
    where agreeing at every batch would cost up to a third of a small
    model's step; and a stop lands at most about a second of training after
    the signal, well within the grace period of SLURM or Kubernetes (30 s
    and more).
    """

    def __init__(self, cluster, seconds=AGREE_SECONDS, max_interval=100000):
        self.cluster = cluster
        self.seconds = float(seconds)
        self.max_interval = int(max_interval)
        self.agreed = False
        self.agreed_at = None  # time.monotonic() of the agreement to stop
        self.agreements = 0
        self._batches = 0
        #: Batches between agreements: 1 at first (the first batch compiles
        #: and sets no pace), then the chief's proposal from its batch rate.
        self.interval = 1
        self._since = time.monotonic()

    def _agree(self, flag):
        now = time.monotonic()
        proposal = 1
        if self.cluster.is_chief and self._batches:
            per_batch = max(now - self._since, 1e-6) / max(self._batches, 1)
            proposal = min(max(int(self.seconds / per_batch), 1), self.max_interval)
        stop, interval = self.cluster.agree(flag, proposal)
        self.agreements += 1
        self._batches = 0
        self.interval = max(int(interval), 1)
        self._since = time.monotonic()
        if stop and not self.agreed:
            self.agreed, self.agreed_at = True, self._since
        return self.agreed

    def batch_end(self, flag):
        """Called after every batch on every worker; returns whether to stop."""
        if self.cluster.world == 1:
            return bool(flag)
        self._batches += 1
        if self._batches >= self.interval and not self.agreed:
            return self._agree(flag)
        return self.agreed

    def requested(self, flag):
        """Whether to stop, at any hook: the agreed answer (the flag, alone)."""
        return bool(flag) if self.cluster.world == 1 else self.agreed

    def now(self, flag):
        """Agrees at once (every worker must call it at the same point)."""
        if self.cluster.world == 1:
            return bool(flag)
        return self._agree(flag) if not self.agreed else True
