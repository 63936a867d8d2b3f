"""Keras' own test suite for BackupAndRestore, run against ours.

Ported from keras/src/callbacks/backup_and_restore_test.py (Keras 3), with a
plain `model.fit()` as there. Assertions on Keras' private attributes
(`_current_epoch`, `_last_batch_seen`, `_weights_path`) become the public
equivalents (`backup_info()`, the History). Where our behaviour differs on
purpose the test says so:

- Keras' step-wise test expects the interrupted epoch to be trained again
  (a counter of 17 = 2 + 15 batches). Ours, as tf.keras did, skips the
  batches that were done and saved: 2 + 13 = 15.
- Keras publishes a save inside the hook; ours at the next hook, once every
  callback has finished the batch. When a callback listed after ours raises
  in a plain model.fit() (which then calls no hook), that save is published
  when the callback is used again, before it restores.
"""

import os

import numpy as np
import pytest

import keras

from kerasbackup import BackupAndRestore
from kerasbackup.store import CheckpointFallbackWarning, backup_info


class InterruptingCallback(keras.callbacks.Callback):
    def __init__(self, steps_int, epoch_int):
        super().__init__()
        self.batch_count = 0
        self.epoch_count = 0
        self.steps_int = steps_int
        self.epoch_int = epoch_int

    def on_epoch_end(self, epoch, log=None):
        self.epoch_count += 1
        if self.epoch_int is not None and self.epoch_count == self.epoch_int:
            raise RuntimeError("EpochInterruption")

    def on_batch_end(self, batch, logs=None):
        self.batch_count += 1
        if self.steps_int is not None and self.batch_count == self.steps_int:
            raise RuntimeError("StepsInterruption")


class CanaryLayer(keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.counter = self.add_weight(shape=(), initializer="zeros",
                                       dtype="float32", trainable=False)

    def call(self, x):
        self.counter.assign_add(1)
        return x


def make_model():
    model = keras.Sequential([keras.layers.Input((3,)), CanaryLayer(),
                              keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd", metrics=["mse"])
    return model


def data():
    rng = np.random.default_rng(0)
    return rng.random((10, 3)), rng.random((10, 1))  # 3 batches of 4


def positions(d):
    return [(c["epoch"], c["batch"]) for c in backup_info(d)]


# 1, 2
@pytest.mark.parametrize("save_freq", ["batch", 0.15])
def test_save_freq_unknown_error(save_freq):
    with pytest.raises(ValueError, match="Invalid value"):
        BackupAndRestore(backup_dir="backup_dir", save_freq=save_freq)


# 3, 4
def test_best_case_step(tmp_path):
    backup_dir = str(tmp_path / "subdir")
    assert not os.path.exists(backup_dir)
    model = make_model()
    cbk = BackupAndRestore(backup_dir, save_freq=1)
    x_train, y_train = data()
    with pytest.raises(RuntimeError, match="StepsInterruption"):
        model.fit(x_train, y_train, batch_size=4, epochs=2, verbose=0,
                  callbacks=[cbk, InterruptingCallback(steps_int=2, epoch_int=None)])
    # 3: a backup exists. (Keras' holds 2 batches; ours publishes the save
    # due after batch 2 when the callback is used again.)
    assert os.path.exists(backup_dir)
    assert int(model.layers[0].counter.value) == 2

    # 4: resumed, it ends after epoch 5.
    hist = model.fit(x_train, y_train, batch_size=4, callbacks=[cbk], epochs=5,
                     verbose=0)
    assert hist.epoch[-1] == 4
    assert int(model.layers[0].counter.value) == 15  # Keras 3: 17 (retrains 2)


# 5, 6
def test_best_case_epoch(tmp_path):
    backup_dir = str(tmp_path / "subdir")
    model = make_model()
    assert int(model.layers[0].counter.value) == 0
    cbk = BackupAndRestore(backup_dir=backup_dir, save_freq="epoch")
    x_train, y_train = data()
    with pytest.raises(RuntimeError, match="EpochInterruption"):
        model.fit(x_train, y_train, batch_size=4, epochs=6, verbose=0,
                  callbacks=[cbk, InterruptingCallback(steps_int=None, epoch_int=2)])
    # 5: (Keras' backup is of epoch 2's end; ours is published at reuse.)
    assert os.path.exists(backup_dir)
    assert int(model.layers[0].counter.value) == 6

    # 6
    hist = model.fit(x_train, y_train, batch_size=4, callbacks=[cbk], epochs=5,
                     verbose=0)
    assert hist.epoch[-1] == 4
    assert int(model.layers[0].counter.value) == 5 * 3


# 7
def test_backup_corrupted(tmp_path):
    backup_dir = str(tmp_path / "subdir")
    model = make_model()
    cbk = BackupAndRestore(backup_dir=backup_dir, save_freq="epoch",
                           double_checkpoint=True)
    x_train, y_train = data()
    with pytest.raises(RuntimeError, match="EpochInterruption"):
        model.fit(x_train, y_train, batch_size=4, epochs=6, verbose=0,
                  callbacks=[cbk, InterruptingCallback(steps_int=None, epoch_int=2)])
    assert int(model.layers[0].counter.value) == 6
    # Publish the save that was due (epoch 2's end), as reusing the callback
    # would, so that the newest checkpoint is the one Keras corrupts.
    cbk.abort()
    assert positions(backup_dir) == [(1, 0), (2, 0)]
    newest = backup_info(backup_dir)[-1]["path"]
    with open(os.path.join(newest, "arrays.bin"), "r+b") as f:
        f.write(b"0")
    with pytest.warns(CheckpointFallbackWarning, match="checksum mismatch"):
        hist = model.fit(x_train, y_train, batch_size=4, callbacks=[cbk],
                         epochs=5, verbose=0)
    assert hist.epoch[-1] == 4
    assert int(model.layers[0].counter.value) == 5 * 3


# 8
def test_model_deleted_case_epoch(tmp_path):
    backup_dir = str(tmp_path / "subdir")
    model = make_model()
    cbk = BackupAndRestore(backup_dir, save_freq="epoch")
    x_train, y_train = data()
    model.fit(x_train, y_train, batch_size=4, callbacks=[cbk], epochs=2, verbose=0)
    assert not os.path.exists(backup_dir)


# 9, 10
@pytest.mark.parametrize("backup_dir", ["", None])
def test_backup_dir_empty_or_none_error(backup_dir):
    with pytest.raises(ValueError, match="Invalid value for argument `backup_dir`"):
        BackupAndRestore(backup_dir=backup_dir, save_freq="epoch")
