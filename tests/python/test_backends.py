"""What each Keras backend needs for an exact resume (issue 11).

These tests run on the backend of this process (KERAS_BACKEND), and
test_other_backends.py runs them again on the other backends:

- the driver's train step is Keras' own (it trains as `model.fit()` does);
- every global random generator training may draw from continues after a
  resume as it would have without the interruption: Python's, NumPy's,
  Keras' global SeedGenerator, and on torch torch's own (Dropout with
  seed=None draws from it there);
- a callback reading `self.model` mid-epoch (on JAX that syncs the state
  held outside the model) changes nothing;
- an asynchronous save captures the values of the moment it was taken,
  however far training has moved on when the saver's thread writes them.
"""

import dataclasses
import os
import random
import zlib

import numpy as np
import pytest

import keras

import kerasbackup
from kerasbackup import state as training_state
from kerasbackup.saver import HostBuffers
from kerasbackup.store import CheckpointStore
from kerasbackup.store.fileio import crc32_combine

import helpers_training as ht

BACKEND = keras.backend.backend()
X, Y = ht.make_data(70)  # 56 training samples: 7 batches of 8 per epoch


def _variables(model):
    return [np.array(v.numpy()) for v in model.variables + model.optimizer.variables]


def _assert_arrays_equal(actual, expected):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.dtype == e.dtype and np.array_equal(a, e), f"array {i} differs"


def test_the_driver_trains_as_model_fit_does():
    # Without Dropout: on torch, model.fit()'s DataLoader draws from torch's
    # global generator at every epoch, which the driver has no reason to do.
    def train(fit):
        model = ht.make_model(dropout=False)
        fit(model, X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0,
            validation_split=0.2)
        return model

    ours = train(kerasbackup.fit)
    keras_fit = train(lambda model, *a, **k: model.fit(*a, **k))
    _assert_arrays_equal(_variables(ours), _variables(keras_fit))
    assert ours.history.history == keras_fit.history.history


class Draws(keras.callbacks.Callback):
    """Draws from every global generator after each batch, and reads self.model.

    Reading `self.model` syncs JAX's state into the variables mid-epoch, as
    any callback that looks at the model does.
    """

    def __init__(self):
        super().__init__()
        self.draws = []

    def on_train_batch_end(self, batch, logs=None):
        weights = self.model.trainable_variables[0].numpy()
        draw = [random.random(), float(np.random.random()),
                float(keras.random.uniform(())), float(weights.sum())]
        if BACKEND == "torch":
            import torch

            draw.append(float(torch.rand(())))
        self.draws.append(draw)


def _run(backup_dir, points, save_freq, async_save=False):
    """Trains 3 epochs with restarts at `points`; returns (model, draws after the last restart)."""
    stopper = ht.interrupter(points)
    while True:
        model = ht.make_model()  # Dropout(seed=None)
        draws = Draws()
        try:
            kerasbackup.fit(model, X, Y, batch_size=8, epochs=3, verbose=0,
                            validation_split=0.2,
                            callbacks=[stopper, draws, kerasbackup.BackupAndRestore(
                                backup_dir, save_freq=save_freq,
                                async_save=async_save)])
            return model, draws.draws
        except ht.Interrupted:
            pass


@pytest.mark.parametrize("save_freq,async_save", [(3, False), (2, True)])
def test_every_global_generator_continues_as_uninterrupted(tmp_path, save_freq,
                                                           async_save):
    expected, expected_draws = _run(str(tmp_path / "reference"), [], save_freq)
    model, draws = _run(str(tmp_path / "backup"), [(1, 4)], save_freq, async_save)
    _assert_arrays_equal(_variables(model), _variables(expected))
    assert model.history.history == expected.history.history
    # The resumed run's draws are the tail of the uninterrupted run's.
    assert draws and draws == expected_draws[-len(draws):]


def test_torch_global_generator_is_in_the_checkpoint(tmp_path):
    d = str(tmp_path / "backup")
    model = ht.make_model()
    kerasbackup.fit(model, X, Y, batch_size=8, epochs=1, verbose=0,
                    callbacks=[kerasbackup.BackupAndRestore(
                        d, delete_checkpoint=False, async_save=False)])
    with CheckpointStore(d) as store:
        arrays, meta, _ = store.load()
    assert meta["fingerprint"]["backend"] == BACKEND
    if BACKEND == "torch":
        import torch

        # The end of training: nothing drew from it since the last save.
        assert np.array_equal(arrays["rng/torch"], torch.get_rng_state().numpy())
    else:
        assert "rng/torch" not in arrays


def test_a_checkpoint_of_another_backend_is_refused(tmp_path):
    d = str(tmp_path / "backup")
    kerasbackup.fit(ht.make_model(), X, Y, batch_size=8, epochs=1, verbose=0,
                    callbacks=[kerasbackup.BackupAndRestore(d, delete_checkpoint=False)])
    other = "jax" if BACKEND != "jax" else "torch"
    with CheckpointStore(d) as store:
        arrays, meta, info = store.load()
        meta["fingerprint"]["backend"] = other
        store.save(arrays, meta, epoch=info["epoch"], batch=info["batch"])
    with pytest.raises(kerasbackup.FingerprintMismatchError) as err:
        kerasbackup.fit(ht.make_model(), X, Y, batch_size=8, epochs=2, verbose=0,
                        callbacks=[kerasbackup.BackupAndRestore(d)])
    assert ("backend", other, BACKEND) in err.value.differences


@pytest.mark.parametrize("copy_threads", [1, 2])
def test_a_background_capture_keeps_the_values_of_its_moment(monkeypatch, copy_threads):
    """The asynchronous path: copies made at capture, read after training moved on."""
    from kerasbackup import saver

    # A big state is copied to host memory on two threads: both ways here.
    monkeypatch.setattr(saver, "PARALLEL_COPY_BYTES", 1 << 60 if copy_threads == 1 else 0)
    fills = []
    fill = HostBuffers.fill
    monkeypatch.setattr(HostBuffers, "fill", lambda *a: fills.append(fill(*a)) or fills[-1])
    model = ht.make_model()
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)  # every variable exists
    before = [np.array(v.numpy()) for v in model.variables + model.optimizer.variables]
    progress = training_state.TrainingState(epoch=1)
    buffers = HostBuffers()
    captured = training_state.capture(model, progress, include_metrics=True,
                                      into=buffers)
    if BACKEND in ("jax", "torch"):
        # Taken on the device; host memory is reached on the saver's thread.
        assert captured.on_device == len(before) + len(model.metrics_variables)
    else:
        assert captured.on_device == 0
        assert len(fills) == 1 and (fills[0] > 0) == (copy_threads == 2)  # helper's pieces
    # Training goes on (on JAX its step donates the state's buffers).
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    after = [np.array(v.numpy()) for v in model.variables + model.optimizer.variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    arrays = captured.host_arrays()
    assert captured.on_device == 0
    # On TensorFlow the copies were checksummed as they were made (the
    # store does not read them again); JAX's and torch's come later.
    copied = [n for n in arrays if n.split("/")[0] in captured.meta["variables"]]
    if BACKEND in ("jax", "torch") or crc32_combine is None:  # or without isal
        assert captured.checksums == {}
    else:
        assert sorted(captured.checksums) == sorted(copied) and copied
        for name in copied:
            assert captured.checksums[name] == zlib.crc32(arrays[name].tobytes()), name
    n_model = len(model.variables)
    got = ([arrays[f"model/{i:05d}"] for i in range(n_model)]
           + [arrays[f"optimizer/{i:05d}"] for i in range(len(before) - n_model)])
    _assert_arrays_equal(got, before)
    for group, entries in captured.meta["variables"].items():
        for i, (path, shape, dtype) in enumerate(entries):
            a = arrays[f"{group}/{i:05d}"]
            assert (list(a.shape), str(a.dtype)) == (shape, dtype), path
    # The next capture reuses the buffers; the values are its own.
    again = training_state.capture(model, progress, include_metrics=True,
                                   into=buffers).host_arrays()
    _assert_arrays_equal([again[f"model/{i:05d}"] for i in range(n_model)],
                         after[:n_model])


def test_a_synchronous_capture_keeps_the_values_of_its_moment():
    """Without host buffers a capture takes no copy on TensorFlow: each read
    is a snapshot that the next updates leave as it was."""
    model = ht.make_model()
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    variables = model.variables + model.optimizer.variables
    before = [np.array(v.numpy()) for v in variables]
    arrays, index = training_state.capture_variables(model, include_metrics=False)
    n_model = len(model.variables)
    got = ([arrays[f"model/{i:05d}"] for i in range(n_model)]
           + [arrays[f"optimizer/{i:05d}"] for i in range(len(before) - n_model)])
    if BACKEND == "tensorflow":  # the read tensors themselves, not copies
        assert not any(a.flags.writeable for a in got)
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    after = [np.array(v.numpy()) for v in variables]
    trained = [i for i, v in enumerate(model.variables) if v.trainable]
    assert trained and all(not np.array_equal(before[i], after[i]) for i in trained)
    _assert_arrays_equal(got, before)
    assert [e[0] for e in index["model"]] == [v.path for v in model.variables]


def test_a_capture_reads_each_variable_at_its_current_value():
    """On TensorFlow also a variable made with a caching_device, whose
    value() returns the copy cached when it was created."""
    zeros = np.zeros((2, 3), dtype="float32")
    if BACKEND == "tensorflow":
        import tensorflow as tf

        initial = tf.Variable(zeros, caching_device="/cpu:0")
    else:
        initial = zeros
    variable = keras.Variable(initial)
    variable.assign(zeros + 1.5)
    holder = _Holder([variable])
    progress = training_state.TrainingState(epoch=0)
    for into in (None, HostBuffers()):  # a synchronous and a background capture
        arrays = training_state.capture(holder, progress, False, into=into).host_arrays()
        assert np.array_equal(arrays["model/00000"], zeros + 1.5)


def test_bfloat16_variables_reach_host_memory_intact():
    # NumPy has no bfloat16 of its own (ml_dtypes provides it), and torch's
    # tensors of it cannot be turned into NumPy arrays directly.
    import ml_dtypes

    values = np.array([[1.5, -2.25], [3.0e3, 0.0078125]], dtype=ml_dtypes.bfloat16)
    holder = _Holder([keras.Variable(values, dtype="bfloat16")])
    progress = training_state.TrainingState(epoch=0)
    for into in (None, HostBuffers()):  # a synchronous and a background capture
        captured = training_state.capture(holder, progress, False, into=into)
        arrays = captured.host_arrays()
        assert arrays["model/00000"].dtype == values.dtype
        assert np.array_equal(arrays["model/00000"], values)
        assert captured.meta["variables"]["model"][0][1:] == [[2, 2], "bfloat16"]


def test_the_json_part_of_a_state_is_a_copy_in_plain_values():
    @dataclasses.dataclass
    class Setting:  # e.g. in a user callback's saved state
        size: int
        shape: tuple

    progress = training_state.TrainingState(
        epoch=2, history={"loss": [np.float32(0.5)]}, history_epochs=[1],
        shuffle_seed=np.int64(7),
        callbacks=[{"setting": Setting(1, (2, 3))}])
    meta = progress.to_meta()
    assert meta["epoch"] == 2 and meta["shuffle_seed"] == 7
    assert meta["history"] == {"loss": [0.5]}
    assert meta["callbacks"] == [{"setting": {"size": 1, "shape": [2, 3]}}]
    progress.history["loss"].append(1.0)
    assert meta["history"] == {"loss": [0.5]}
    assert training_state.TrainingState.from_meta(meta).history == {"loss": [0.5]}


class _Misdeclared:
    """A variable whose value is not of the shape it declares."""

    path = "odd/variable"
    shape = (2, 2)
    dtype = "float32"

    def __init__(self, value):
        self._value = value

    def numpy(self):
        return self._value


def test_checksums_of_a_capture_fit_its_arrays_when_one_is_kept_apart(tmp_path):
    # A value that is not what its variable declares gets a copy of its own,
    # outside the block and without a checksum; the others' checksums must
    # still name the right arrays, or the checkpoint would not verify.
    odd = np.arange(3, dtype=np.float32)
    holder = _Holder([keras.Variable(np.full((3, 2), 1.5, "float32")), _Misdeclared(odd),
                      keras.Variable(np.arange(4, dtype="float32"))])
    checksums = {}
    arrays, index = training_state.capture_variables(holder, False, into=HostBuffers(),
                                                     checksums=checksums)
    assert np.array_equal(arrays["model/00001"], odd)
    assert index["model"][1] == ["odd/variable", [3], "float32"]
    expected = {} if crc32_combine is None else {
        n: zlib.crc32(arrays[n].tobytes()) for n in ("model/00000", "model/00002")}
    assert checksums == expected
    with CheckpointStore(str(tmp_path / "b")) as st:
        st.save(arrays, {}, 1, 0, checksums=checksums)
        assert [i["verified"] for i in st.checkpoints(verify=True)] == [True]
        loaded, _, _ = st.load()
    _assert_arrays_equal([loaded[n] for n in sorted(arrays)],
                         [arrays[n] for n in sorted(arrays)])


class _Holder:
    """Stands in for a model in a capture: variables, no optimizer."""

    def __init__(self, variables):
        self.variables = variables
        self.optimizer = None
