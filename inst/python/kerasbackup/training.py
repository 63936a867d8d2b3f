"""A fit() that feeds the data itself, so a restored run resumes exactly.

Keras' `model.fit()` can start at an epoch but not at a batch, and its
shuffle order cannot be reproduced. This driver keeps Keras' train step,
callbacks and History, and owns only the data order: epoch `e` of a run with
shuffle seed `s` visits the samples in `default_rng([s, e]).permutation(n)`.
The seed is saved in every checkpoint, so a resumed run sees the same order
and skips the batches it already did.
"""

import math

import numpy as np

import keras
from keras.src import tree
from keras.src.trainers.data_adapters import data_adapter_utils

from kerasbackup import distributed, replicas, shims
from kerasbackup.backend_step import make_stepper
from kerasbackup.callback import BackupAndRestore, DriverRun
from kerasbackup import errors
from kerasbackup.errors import ResumeWarning


def _to_numpy(value):
    if value is None or isinstance(value, np.ndarray):
        return value
    if keras.ops.is_tensor(value) or hasattr(value, "numpy"):
        return keras.ops.convert_to_numpy(value)
    return np.asarray(value)


def _numpy_tree(structure):
    return None if structure is None else tree.map_structure(_to_numpy, structure)


def _is_array_data(x):
    if x is None:
        return False
    leaves = tree.flatten(x)
    return bool(leaves) and all(
        isinstance(v, (np.ndarray, list, int, float)) or keras.ops.is_tensor(v)
        for v in leaves
    )


def _num_samples(structure):
    sizes = {int(v.shape[0]) for v in tree.flatten(structure) if v is not None}
    if len(sizes) != 1:
        raise ValueError(
            "All arrays given to fit() must have the same number of samples "
            f"(first dimension). Received sizes: {sorted(sizes)}"
        )
    return sizes.pop()


def _take(structure, index):
    return tree.map_structure(lambda v: None if v is None else v[index], structure)


def _split_validation(data, validation_split):
    # Same rule as Keras: the last fraction of the samples, before shuffling.
    n = _num_samples(tuple(v for v in data if v is not None))
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"validation_split={validation_split} leaves "
            f"{split_at} training and {n - split_at} validation samples out "
            f"of {n}; both must be at least 1."
        )
    train = tuple(_take(v, slice(0, split_at)) for v in data)
    val = tuple(_take(v, slice(split_at, n)) for v in data)
    return train, val


def _resolve_verbose(verbose):
    return 1 if verbose == "auto" else int(verbose)


def fit(
    model,
    x=None,
    y=None,
    batch_size=None,
    epochs=1,
    verbose="auto",
    callbacks=None,
    validation_split=0.0,
    validation_data=None,
    shuffle=True,
    class_weight=None,
    sample_weight=None,
    initial_epoch=0,
    steps_per_epoch=None,
    validation_steps=None,
    validation_batch_size=None,
    validation_freq=1,
):
    """Trains `model` like `model.fit()`, resuming exactly from a backup.

    Takes `model.fit()`'s arguments. With in-memory data (numpy arrays,
    tensors, or lists/dicts of them) the data order is reproducible and a
    `BackupAndRestore` callback resumes at the exact next batch. Other data
    sources (tf.data, generators, PyDataset) are passed through batch by batch
    and resume at the right epoch and batch count, with a warning that their
    order is not reproduced.

    Under a multi-worker engine (tf.distribute.MultiWorkerMirroredStrategy,
    jax.distributed), every worker calls fit() with the same arrays and the
    global `batch_size`; each trains on its share of every batch, chosen by
    its rank (see distributed.py).

    Returns:
        The `History` of the whole run, restored epochs included.
    """
    model._assert_compile_called("fit")
    callbacks = list(callbacks or [])
    backups = [cb for cb in callbacks if isinstance(cb, BackupAndRestore)]
    if len(backups) > 1:
        raise ValueError(
            "fit() got more than one BackupAndRestore callback; use one per run."
        )
    verbose = _resolve_verbose(verbose)
    if _is_array_data(x):
        feed = _ArrayFeed(x, y, sample_weight, class_weight, batch_size,
                          validation_split, validation_data, shuffle,
                          steps_per_epoch)
    else:
        if validation_split:
            raise ValueError(
                "validation_split is only supported for in-memory arrays; "
                "pass validation_data instead."
            )
        feed = _StreamFeed(x, steps_per_epoch)
    if feed.validation is None and validation_data is not None:
        feed.validation = _unpack(validation_data)
    cluster = distributed.cluster_for(model)
    if cluster.world > 1:
        _check_shares(feed, cluster.world)

    with distributed.scope(model):
        _build(model, cluster.share(feed.peek()))

    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=feed.steps,
        model=model,
    )
    shuffle_seed = int(np.random.randint(0, 2**31 - 1)) if feed.shuffles else None
    shuffle_seed = cluster.broadcast(shuffle_seed)  # one data order for all workers
    run = DriverRun(callbacks=list(callback_list.callbacks),
                    fingerprint=feed.fingerprint(), shuffle_seed=shuffle_seed)
    feed.seed = shuffle_seed
    attached = []
    stepper = make_stepper(model)
    try:
        for cb in backups:
            cb.attach(run)
            attached.append(cb)
        with shims.applied_for(model), cluster.peer_errors():
            return _train(model, stepper, feed, callback_list, run, backups, epochs,
                          initial_epoch, validation_batch_size or feed.batch_size,
                          validation_freq, validation_steps, cluster)
    except BaseException as e:
        for cb in attached:
            cb.abort(e)
        raise
    finally:
        stepper.close()  # the training state back on the model, as Keras does
        for cb in attached:
            cb.detach()


def _build(model, batch):
    try:
        model._symbolic_build(data_batch=batch)
    except RuntimeError as e:
        # A subclassed model that cannot run symbolically (a GAN whose
        # train_step calls its parts, with no call() of its own): Keras' own
        # TensorFlow fit() leaves it to be built by the first traced step,
        # and so do we.
        if "Unable to automatically build the model" not in str(e):
            raise


def _train(model, stepper, feed, callbacks, run, backups, epochs, initial_epoch,
           validation_batch_size, validation_freq, validation_steps, cluster):
    model.stop_training = False
    callbacks.on_train_begin()

    start_epoch, start_batch = initial_epoch, 0
    resume = next((cb.restored_state for cb in backups if cb.restored_state), None)
    if resume is not None:
        start_epoch, start_batch = resume.epoch, resume.batch
        if resume.shuffle_seed is not None and feed.shuffles:
            feed.seed = run.shuffle_seed = resume.shuffle_seed
        if not feed.exact:
            errors.warn(
                "This data source cannot be rewound: training resumes at "
                f"epoch {start_epoch + 1}, batch {start_batch + 1}, but the "
                "order of the batches is not the one the interrupted run "
                "would have used.",
                ResumeWarning,
                stacklevel=3,
            )

    training_logs = None
    for epoch in range(start_epoch, epochs):
        model.reset_metrics()
        skip = start_batch if epoch == start_epoch else 0
        callbacks.on_epoch_begin(epoch)  # a resumed epoch's metrics are restored here
        stepper.begin_epoch()
        logs = None
        for step, batch in feed.batches(epoch, skip):
            callbacks.on_train_batch_begin(step)
            # This worker's share, split among its replicas (TF strategies).
            logs = stepper.step(replicas.split_batch(model, cluster.share(batch)))
            callbacks.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        stepper.end_epoch()
        if logs is None:
            epoch_logs = dict(model.get_metrics_result())
        else:
            epoch_logs = dict(model._get_metrics_result_or_logs(logs))
        if feed.validation is not None and model._should_eval(epoch, validation_freq):
            vx, vy, vw = feed.validation
            val_logs = model.evaluate(
                x=vx, y=vy, sample_weight=vw, batch_size=validation_batch_size,
                steps=validation_steps, callbacks=callbacks, return_dict=True,
                verbose=0,
            )
            epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
        callbacks.on_epoch_end(epoch, epoch_logs)
        training_logs = epoch_logs
        if model.stop_training:
            break

    if isinstance(model.optimizer, keras.optimizers.Optimizer) and epochs > 0:
        model.optimizer.finalize_variable_values(model.trainable_weights)
    callbacks.on_train_end(logs=training_logs)
    return model.history


def _check_shares(feed, world):
    if not isinstance(feed, _ArrayFeed):
        raise ValueError(
            f"kerasbackup.fit() with {world} workers needs in-memory arrays "
            "(x, y): each worker takes its share of every global batch by its "
            "rank, which a dataset or generator cannot provide.")
    distributed.check_shares(feed.n, feed.batch_size, feed.steps, world)


def _unpack(data):
    if not isinstance(data, (list, tuple)):
        # A dataset or other iterable: evaluate() reads it as it is.
        return data, None, None
    x, y, w = data_adapter_utils.unpack_x_y_sample_weight(tuple(data))
    return _numpy_tree(x), _numpy_tree(y), _numpy_tree(w)


class _ArrayFeed:
    """In-memory data, batched in a reproducible order."""

    exact = True

    def __init__(self, x, y, sample_weight, class_weight, batch_size,
                 validation_split, validation_data, shuffle, steps_per_epoch):
        x, y, sample_weight = _numpy_tree(x), _numpy_tree(y), _numpy_tree(sample_weight)
        if class_weight is not None:
            if sample_weight is not None:
                raise ValueError(
                    "Arguments `sample_weight` and `class_weight` cannot be "
                    "given together."
                )
            sample_weight = data_adapter_utils.class_weight_to_sample_weights(
                y, class_weight
            )
        self.validation = None
        if validation_split and validation_data is None:
            (x, y, sample_weight), self.validation = _split_validation(
                (x, y, sample_weight), validation_split
            )
        self.data = (x, y, sample_weight)
        self.n = _num_samples(tuple(v for v in self.data if v is not None))
        self.batch_size = int(batch_size or 32)
        self.steps = math.ceil(self.n / self.batch_size)
        if steps_per_epoch is not None:
            self.steps = min(self.steps, int(steps_per_epoch))
        # shuffle="batch" (Keras' chunked shuffle) is treated as a full shuffle.
        self.shuffles = bool(shuffle)
        self.seed = None

    def fingerprint(self):
        return {"batch size": self.batch_size, "samples": self.n,
                "steps per epoch": self.steps}

    def peek(self):
        return self._batch(np.arange(min(self.batch_size, self.n)))

    def _batch(self, index):
        x, y, w = self.data
        return _keras_batch(_take(x, index), _take(y, index), _take(w, index))

    def order(self, epoch):
        if not self.shuffles:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def batches(self, epoch, skip):
        order = self.order(epoch)
        bs = self.batch_size
        for step in range(skip, self.steps):
            yield step, self._batch(order[step * bs:(step + 1) * bs])


class _StreamFeed:
    """tf.data datasets, generators and PyDatasets: fed as they come."""

    exact = False
    shuffles = False
    validation = None
    batch_size = None

    def __init__(self, x, steps_per_epoch):
        self.source = x
        self.steps = int(steps_per_epoch) if steps_per_epoch else None
        # Keras' rule: an explicit steps_per_epoch draws from one iterator
        # across epochs; otherwise each epoch is a fresh pass.
        self.continuous = bool(steps_per_epoch)
        self._peeked = None
        self._iterator = None
        self.seed = None
        if not self.steps and hasattr(x, "__len__"):
            try:
                self.steps = len(x)
            except TypeError:
                self.steps = None

    def fingerprint(self):
        return {"steps per epoch": self.steps} if self.steps else {}

    def _new_iterator(self):
        src = self.source
        if hasattr(src, "__getitem__") and hasattr(src, "__len__") and not hasattr(src, "element_spec"):
            return (src[i] for i in range(len(src)))
        return iter(src)

    def peek(self):
        if self._peeked is None:
            self._iterator = self._new_iterator()
            self._peeked = next(self._iterator)
        return _as_batch(self._peeked)

    def batches(self, epoch, skip):
        # With steps_per_epoch an iterator runs across epochs (Keras' rule for
        # generators); without it each epoch starts a fresh pass.
        first = []
        if self._peeked is not None:
            first, self._peeked = [self._peeked], None
        elif not (self.continuous and self._iterator is not None):
            self._iterator = self._new_iterator()
        it = self._iterator
        step = 0
        while self.steps is None or step < self.steps:
            if first:
                batch = first.pop()
            else:
                try:
                    batch = next(it)
                except StopIteration:
                    break
            if step >= skip:
                yield step, _as_batch(batch)
            step += 1


def _as_batch(batch):
    # As Keras passes a stream's element to train_step(): lists become tuples,
    # anything else (a lone `x`, a dict) is left as it is.
    if isinstance(batch, list):
        return tuple(batch)
    return batch


def _keras_batch(x, y, w):
    # The `data` Keras hands to train_step() for in-memory arrays: `x` alone
    # without targets, `(x, y)` without weights, else `(x, y, w)`. A custom
    # train_step() (often written in R) relies on this structure.
    return data_adapter_utils.pack_x_y_sample_weight(x, y, w)
