"""Restores are all-or-nothing (issue 10, defect 5).

A checkpoint that verifies on disk (sizes and checksums match) can still hold
content that does not fit the model: arrays whose dtype or shape contradict
the table or the model, a missing array, a broken random-generator state, a
malformed callback entry or position. Such a checkpoint is classed corrupt:
the next older one is restored instead (with a CheckpointFallbackWarning),
and when none is left, fit() stops with CorruptCheckpointError and the
model and the global generators are exactly as they were.

The bad checkpoints are written through the store's public API, so their
checksums are valid: only the content is wrong.
"""

import json
import random
import warnings

import numpy as np
import pytest

import keras

import kerasbackup
from kerasbackup import BackupAndRestore, CorruptCheckpointError
from kerasbackup.store import CheckpointFallbackWarning, CheckpointStore

import helpers_training as ht

X, Y = ht.make_data(50)  # 40 for training: 5 batches of 8 per epoch


def _astype(name, dtype, table_too=True):
    def change(arrays, meta):
        arrays[name] = arrays[name].astype(dtype)
        if table_too:
            group, i = name.split("/")
            meta["variables"][group][int(i)][2] = dtype
    return change


def _transpose(name):
    def change(arrays, meta):
        arrays[name] = np.ascontiguousarray(arrays[name].T)
        group, i = name.split("/")
        meta["variables"][group][int(i)][1] = list(arrays[name].shape)
    return change


def _drop(name):
    def change(arrays, meta):
        del arrays[name]
    return change


def _meta(path, value):
    def change(arrays, meta):
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def _history_values(extra):
    def change(arrays, meta):
        key = sorted(meta["history"])[0]
        meta["history"][key] = meta["history"][key] + [0.5] * extra
    return change


def _drop_rng(name):
    def change(arrays, meta):
        del meta["rng"][name]
        arrays.pop(f"rng/{name}", None)
    return change


def _ranks(count):
    def change(arrays, meta):  # the checkpoint's own generators, as a worker's
        entry = {"meta": meta["rng"],
                 "arrays": {k: [str(a.dtype), list(a.shape), a.reshape(-1).tolist()]
                            for k, a in arrays.items() if k.startswith("rng/")}}
        meta["rng_ranks"] = [entry] * count
    return change


def _early_stopping(key, value):
    def change(arrays, meta):
        [entry] = [e for e in meta["callbacks"] if e["class"] == "EarlyStopping"]
        entry["state"][key] = value
    return change


def _rng_array(name, dtype=None, value=None):
    def change(arrays, meta):
        arrays[name] = arrays[name].astype(dtype) if value is None else value
    return change


def _python_rng(index, value):
    def change(arrays, meta):
        meta["rng"]["python"][1][index] = value
    return change


CASES = {
    "float64 weights into float32 variables": _astype("model/00000", "float64"),
    "dtype contradicts the table": _astype("model/00002", "float64", table_too=False),
    "transposed kernel": _transpose("model/00000"),
    "missing optimizer array": _drop("optimizer/00003"),
    "Python RNG word out of range": _python_rng(5, 2**40),
    "Python RNG word not a number": _python_rng(7, "x"),
    "Python RNG version": _meta(["rng", "python", 0], 2),
    "NumPy RNG keys int64": _rng_array("rng/numpy", dtype="int64"),
    "NumPy RNG position": _meta(["rng", "numpy", 1], 900),
    "TF generator state shape": _rng_array("rng/tf", value=np.zeros(4, "int64")),
    "Keras seed generator state shape": _rng_array("rng/keras",
                                                   value=np.zeros(3, "int64")),
    "callback entry malformed": _meta(["callbacks", 0, "position"], "first"),
    "negative epoch": _meta(["epoch"], -1),
    "batch beyond the epoch": _meta(["batch"], 99),
    "history not a mapping": _meta(["history"], [1, 2]),
    "optimizer targets malformed": _meta(["optimizer_targets"], {"optimizer:x": [-1]}),
    "history longer than its epochs": _history_values(5),
    "history of an epoch past the resumed one": _meta(["history_epochs"], [7]),
    "history epochs repeated": _meta(["history_epochs"], [0, 0]),
    "Python RNG state missing": _drop_rng("python"),
    "NumPy RNG state missing": _drop_rng("numpy"),
    "generators of two workers in a one-process checkpoint": _ranks(2),
    "EarlyStopping state of another kind": _early_stopping("wait", "abc"),
    "EarlyStopping attribute it does not save": _early_stopping("stop_training", True),
}
if keras.backend.backend() == "torch":  # torch's generators are saved on torch only
    CASES["torch generator state shape"] = _rng_array("rng/torch",
                                                      value=np.zeros(7, "uint8"))
    CASES["torch CUDA generator of a device 1 without a device 0"] = _rng_array(
        "rng/torch-cuda/1", value=np.zeros(16, "uint8"))


def _callbacks(points=()):
    # The probe comes first: its on_train_begin runs before the restore.
    return [Probe(), ht.interrupter(points)] + ht.make_callbacks(10)


def _first_run(d):
    """Leaves a checkpoint mid-run (epoch 1, after batch 4), with callback state."""
    with pytest.raises(ht.Interrupted):
        kerasbackup.fit(ht.make_model(), X, Y, batch_size=8, epochs=3, verbose=0,
                        validation_split=0.2,
                        callbacks=_callbacks([(1, 4)]) + [BackupAndRestore(d, save_freq=2)])


class Probe(keras.callbacks.Callback):
    """Records the model and the global generators just before the restore."""

    def on_train_begin(self, logs=None):
        self.state = _state(self.model)


def _add_tampered(d, change, keep):
    """Publishes a copy of the newest checkpoint with `change` made to its content."""
    with CheckpointStore(d, keep=keep) as store:
        arrays, meta, info = store.load()
        arrays = {k: np.array(v) for k, v in arrays.items()}
        meta = json.loads(json.dumps(meta))
        change(arrays, meta)
        # The manifest says where the state says (the store refuses a
        # contradiction: test_store.py), unless that is no position at all.
        position = {k: meta[k] if isinstance(meta.get(k), int) and meta[k] >= 0 else info[k]
                    for k in ("epoch", "batch")}
        saved = store.save(arrays, meta, **position)
    return info, saved


def _state(model):
    return ([np.array(v.numpy()) for v in model.variables]
            + [np.array(v.numpy()) for v in model.optimizer.variables],
            random.getstate(), np.random.get_state()[1].copy())


def _assert_same_state(a, b):
    (va, pa, na), (vb, pb, nb) = a, b
    assert len(va) == len(vb)
    for x, y in zip(va, vb):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert pa == pb and np.array_equal(na, nb)


@pytest.mark.parametrize("case", sorted(CASES))
def test_unfit_content_falls_back_to_the_older_checkpoint(tmp_path, case):
    d = str(tmp_path / "backup")
    _first_run(d)
    good, bad = _add_tampered(d, CASES[case], keep=2)
    cb = BackupAndRestore(d, save_freq=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kerasbackup.fit(ht.make_model(), X, Y, batch_size=8, epochs=3, verbose=0,
                        validation_split=0.2, callbacks=_callbacks() + [cb])
    fallbacks = [str(w.message) for w in caught
                 if issubclass(w.category, CheckpointFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]
    assert "invalid content" in fallbacks[0] and bad["path"] in fallbacks[0]
    assert cb.restored_info["path"] == good["path"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_unfit_content_alone_is_corrupt_and_changes_nothing(tmp_path, case):
    d = str(tmp_path / "backup")
    _first_run(d)
    _add_tampered(d, CASES[case], keep=1)  # the good one is pruned
    model = ht.make_model(seed=7)
    callbacks = _callbacks()
    with pytest.raises(CorruptCheckpointError, match="invalid content"):
        kerasbackup.fit(model, X, Y, batch_size=8, epochs=3, verbose=0,
                        validation_split=0.2,
                        callbacks=callbacks + [BackupAndRestore(d, save_freq=2)])
    _assert_same_state(_state(model), callbacks[0].state)


def test_an_assignment_that_fails_after_the_checks_is_undone(tmp_path):
    # Belt and braces: if assigning fails half-way anyway, what was assigned
    # is put back.
    d = str(tmp_path / "backup")
    _first_run(d)
    model = ht.make_model(seed=7)
    model.optimizer.build(model.trainable_variables)
    target = model.optimizer.variables[-1]
    original = type(target).assign

    def failing_assign(self, value):
        if self is target:
            raise RuntimeError("device lost")
        return original(self, value)

    callbacks = _callbacks()
    type(target).assign = failing_assign
    try:
        with pytest.raises(RuntimeError, match="device lost"):
            kerasbackup.fit(model, X, Y, batch_size=8, epochs=3, verbose=0,
                            validation_split=0.2,
                            callbacks=callbacks + [BackupAndRestore(d, save_freq=2)])
    finally:
        type(target).assign = original
    _assert_same_state(_state(model), callbacks[0].state)
