"""One Keras train step per batch, from the driver's own loop, on each backend.

The driver (training.py) owns the data order and calls Keras' own compiled
train step (`model.make_train_function()`, which keeps custom `train_step`
overrides, loss scaling and metrics) once per batch. How that function is
called, and where the training state lives between calls, differs per
backend (keras/src/backend/*/trainer.py), so each backend has a stepper here
with one interface:

    stepper = make_stepper(model)   # after the model and optimizer are built
    stepper.begin_epoch()           # after callbacks.on_epoch_begin()
    logs = stepper.step(batch)      # a host batch: (x, y, sample_weight)
    stepper.end_epoch()             # before the epoch's metrics and evaluate()
    stepper.close()                 # in a `finally`: state back on the model

A driver running under a distribution changes only how a host batch is
placed: `place(batch)`.

This module is the only one that touches Keras' private names of the JAX
fit loop (see `JaxStepper`).
"""

import numpy as np

import keras


def make_stepper(model, backend=None):
    """The stepper for `backend` (default: the backend Keras runs on)."""
    backend = backend or keras.backend.backend()
    cls = _STEPPERS.get(backend)
    if cls is None:
        raise NotImplementedError(
            f"kerasbackup.fit() supports the 'tensorflow', 'jax' and 'torch' "
            f"backends; Keras runs on {backend!r}.")
    return cls(model)


class Stepper:
    """TensorFlow: the state lives in the variables; nothing to carry."""

    def __init__(self, model):
        self.model = model
        model.make_train_function()

    def place(self, batch):
        """The batch as the train function takes it (host arrays here)."""
        return batch

    def step(self, batch):
        # Given an iterator of one batch, Keras' TF train function runs
        # `strategy.run(train_step, (batch,))` once.
        return self.model.train_function(iter([self.place(batch)]))

    def begin_epoch(self):
        pass

    def end_epoch(self):
        pass

    def sync(self):
        """Puts the current training state into the model's variables."""

    def close(self):
        pass


class TorchStepper(Stepper):
    """torch: `train_function([batch])`, torch tensors, Module train/eval modes.

    Keras' torch trainer refuses `steps_per_execution > 1` itself, in
    `make_train_function()`.
    """

    def place(self, batch):
        # Keras' torch fit() feeds tensors from its DataLoader, made by
        # convert_to_tensor (on the default device). torch's tree utilities
        # (which keras.tree uses on this backend) take None for a leaf.
        return keras.tree.map_structure(
            lambda v: None if v is None else keras.ops.convert_to_tensor(v), batch)

    def step(self, batch):
        return self.model.train_function([self.place(batch)])

    def begin_epoch(self):
        # As Keras' torch fit(): torch layers inside the model (and code that
        # reads `Module.training`) behave as in training.
        self.model.train()

    def end_epoch(self):
        self.model.eval()

    def close(self):
        self.model.eval()


class JaxStepper(Stepper):
    """JAX: a stateless, jitted step with the state carried outside the model.

    `train_function(state, iterator) -> (logs, state)` donates `state`
    (donate_argnums=0). This follows the protocol of Keras' JAX fit()
    (JAXTrainer.fit in Keras 3.15.1, unchanged in the 3.16 development tree
    of 2026-08-21): the state is taken from the variables at the first step
    of an epoch, or after a callback synced it, and is put back by
    `model.jax_state_sync()`, which `keras.callbacks.Callback.model` calls.
    So callbacks reading `self.model` (ours, to save) see current values.

    Private names used, all here: `_get_jax_state`, `_jax_state`,
    `_jax_state_synced` (the protocol) and `_distribute_data` (placement
    under a `keras.distribution`). There is no public equivalent in these
    versions; the public-only alternative (read `v.value`, assign after every
    step) measured 1.3-1.5x slower per batch (design note for issue 11).
    """

    def __init__(self, model):
        super().__init__(model)
        self.state = None

    def place(self, batch):
        import jax
        from keras.src.backend.jax.trainer import _distribute_data

        # Keras' JAX fit() feeds NumPy arrays (tf.data elements included,
        # which jax.device_put does not take).
        def host(v):
            return v if v is None or isinstance(v, (np.ndarray, jax.Array)) else np.asarray(v)

        return _distribute_data(keras.tree.map_structure(host, batch))

    def begin_epoch(self):
        # Variables may have been assigned since (a restore, a callback):
        # the first step of the epoch takes the state from them.
        self.model._jax_state_synced = True

    def step(self, batch):
        model = self.model
        if model._jax_state_synced:
            self.state = model._get_jax_state(
                trainable_variables=True, non_trainable_variables=True,
                optimizer_variables=True, metrics_variables=True,
                purge_model_variables=True)
            model._jax_state_synced = False
        logs, self.state = model.train_function(self.state,
                                                 iter([self.place(batch)]))
        trainable, non_trainable, optimizer, metrics = self.state
        # object.__setattr__ skips Layer.__setattr__'s tracking of every
        # array of the state (about 1.5 ms a batch on a small model).
        object.__setattr__(model, "_jax_state", {
            "trainable_variables": trainable,
            "non_trainable_variables": non_trainable,
            "optimizer_variables": optimizer,
            "metrics_variables": metrics,
        })
        return logs

    def sync(self):
        self.model.jax_state_sync()

    def end_epoch(self):
        self.sync()

    def close(self):
        self.sync()
        self.state = None
        object.__setattr__(self.model, "_jax_state", None)


_STEPPERS = {"tensorflow": Stepper, "jax": JaxStepper, "torch": TorchStepper}
