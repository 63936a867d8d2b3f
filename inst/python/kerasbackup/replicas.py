"""Per-replica values under tf.distribute: batches split among replicas, on-read variables.

Two things differ from one device when a model trains under a
tf.distribute strategy with several replicas:

- A batch from the host must be split among this worker's replicas.
  `strategy.run` does not split host data: given a plain batch, every
  replica would train on all of it. `split_batch()` gives local replica `i`
  the `i`-th contiguous slice, a pure function of (batch, replica), so a
  resumed run feeds every replica the same samples.
- Keras' metric accumulators are SyncOnRead variables with SUM
  aggregation: each replica holds its own partial sum and a read returns
  their total. Restoring the total (TF then divides it evenly among the
  replicas) gives the right epoch metric, but not the same bits. So each
  replica's value is captured (gathered from all replicas, every worker's
  under MultiWorkerMirroredStrategy, in replica order), stored as an array
  of shape `(replicas, *shape)`, and row `r` is assigned back to replica
  `r`.

Other backends, and TF without a multi-replica strategy, pass through.
"""

import numpy as np

import keras


def _tf():
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf


def _strategy_of(variable):
    tf = _tf()
    value = getattr(variable, "value", variable)
    if tf is None or not isinstance(value, tf.distribute.DistributedValues):
        return None
    return value.distribute_strategy


def is_on_read(variable):
    """Whether `variable` keeps one value per replica (SyncOnRead, several replicas)."""
    tf = _tf()
    if tf is None or _strategy_of(variable) is None:
        return False
    value = variable.value
    return value.synchronization == tf.VariableSynchronization.ON_READ


def captured_shape(variable):
    """The shape a capture stores for `variable`: `(replicas, *shape)` if on read."""
    shape = tuple(variable.shape)
    if is_on_read(variable):
        return (int(_strategy_of(variable).num_replicas_in_sync),) + shape
    return shape


def replica_count(model):
    """Replicas that train in sync (TF strategy replicas, JAX devices of the distribution)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return int(model.distribute_strategy.num_replicas_in_sync)
    if backend == "jax":
        dist = keras.distribution.distribution()
        if dist is not None:
            return int(np.prod(dist.device_mesh.shape))
    return 1


def split_batch(model, batch):
    """A worker's batch, split among its local replicas (TF; else as given)."""
    tf = _tf()
    if tf is None:
        return batch
    strategy = model.distribute_strategy
    if strategy.num_replicas_in_sync == 1:
        return batch
    local = len(strategy.extended.worker_devices)

    def value_fn(ctx):
        # replica_id_in_sync_group counts every worker's replicas; ours
        # are `local` consecutive ones.
        i = ctx.replica_id_in_sync_group % local

        def cut(v):
            if v is None:
                return None
            per = -(-int(v.shape[0]) // local)
            return tf.constant(v[i * per:(i + 1) * per])
        return keras.tree.map_structure(cut, batch)

    return strategy.experimental_distribute_values_from_function(value_fn)


_GATHERS = {}  # (strategy, variables) -> a traced gather, reused by every capture


def gather(variables):
    """`{index: array (replicas, *shape)}` for the on-read variables among `variables`.

    A collective under MultiWorkerMirroredStrategy: every worker must call
    it at the same point, with the same variables.
    """
    tf = _tf()
    picked = [(i, v) for i, v in enumerate(variables) if is_on_read(v)]
    if not picked:
        return {}
    strategy = _strategy_of(picked[0][1])
    tf_vars = [v.value for _, v in picked]
    key = (id(strategy),) + tuple(id(v) for v in tf_vars)
    found = _GATHERS.get(key)
    if found is None or found[0] is not strategy or any(
            a is not b for a, b in zip(found[1], tf_vars)):
        @tf.function
        def gather_rows():
            local = strategy.run(
                lambda: [tf.expand_dims(tf.identity(v), 0) for v in tf_vars])
            return [strategy.gather(p, axis=0) for p in local]

        if len(_GATHERS) >= 8:
            _GATHERS.clear()
        found = _GATHERS[key] = (strategy, tf_vars, gather_rows)
    rows = found[2]()
    return {i: np.asarray(r) for (i, _), r in zip(picked, rows)}


def assign(pairs):
    """Assigns `(variable, array)` pairs; on-read variables get their row per replica."""
    tf = _tf()
    plain, on_read = [], []
    for v, a in pairs:
        (on_read if is_on_read(v) else plain).append((v, a))
    for v, a in plain:
        v.assign(a)
    if not on_read:
        return
    strategy = _strategy_of(on_read[0][0])
    tf_vars = [v.value for v, _ in on_read]
    rows = [tf.constant(a) for _, a in on_read]

    @tf.function
    def assign_rows():
        def fn():
            r = tf.distribute.get_replica_context().replica_id_in_sync_group
            for v, a in zip(tf_vars, rows):
                v.assign(tf.gather(a, r))
        strategy.run(fn)

    assign_rows()
