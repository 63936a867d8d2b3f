"""The callback on its own: validation, verified all-or-nothing restores,
write failures, clean-up and the restored epoch's scope."""

import errno
import os
import re
import warnings

import numpy as np
import pytest

import keras
import kerasbackup
from kerasbackup import BackupAndRestore, CorruptCheckpointError
from kerasbackup.errors import CallbackStateError, FingerprintMismatchError

from helpers_training import make_data, make_model, phase_hook


def _fit(model, backup_dir, epochs=2, **kwargs):
    x, y = make_data(40)
    cb = BackupAndRestore(backup_dir, **kwargs)
    kerasbackup.fit(model, x, y, batch_size=8, epochs=epochs, verbose=0,
                    callbacks=[cb])
    return cb


def _variables(model):
    return [v.numpy().copy() for v in model.variables] + [
        v.numpy().copy() for v in model.optimizer.variables]


@pytest.mark.parametrize("kwargs, message", [
    ({"backup_dir": ""}, "Invalid value for argument `backup_dir`"),
    ({"backup_dir": None}, "Invalid value for argument `backup_dir`"),
    ({"backup_dir": "d", "save_freq": 0}, "Received: save_freq=0"),
    ({"backup_dir": "d", "save_freq": -3}, "Received: save_freq=-3"),
    ({"backup_dir": "d", "save_freq": True}, "Received: save_freq=True"),
    ({"backup_dir": "d", "save_freq": 1.5}, "Received: save_freq=1.5"),
    ({"backup_dir": "d", "save_freq": "batch"}, "Received: save_freq='batch'"),
    ({"backup_dir": "d", "save_freq": False},
     "`save_freq=False` turns periodic saves off"),
    ({"backup_dir": "d", "delete_checkpoint": "yes"},
     "Received: delete_checkpoint='yes'"),
    ({"backup_dir": "d", "double_checkpoint": 1},
     "Received: double_checkpoint=1"),
    ({"backup_dir": "d", "on_save_error": "ignore"},
     "Received: on_save_error='ignore'"),
    ({"backup_dir": "d", "save_before_preemption": True,
      "preemption_signals": ["SIGKILL"]}, "Received: 'SIGKILL'"),
])
def test_constructor_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=None) as info:
        BackupAndRestore(**kwargs)
    assert message in str(info.value)


def test_keras3_defaults_and_own_implementation(tmp_path):
    cb = BackupAndRestore(str(tmp_path / "b"))
    assert (cb.save_freq, cb.double_checkpoint, cb.delete_checkpoint) == (
        "epoch", False, True)
    assert isinstance(cb, keras.callbacks.Callback)
    assert not isinstance(cb, keras.callbacks.BackupAndRestore)


def test_corrupt_checkpoint_is_refused_and_model_untouched(tmp_path):
    backup = str(tmp_path / "b")
    _fit(make_model(), backup, delete_checkpoint=False)
    (ckpt,) = [p for p in os.listdir(backup) if p.startswith("ckpt-")]
    data = os.path.join(backup, ckpt, "arrays.bin")
    with open(data, "r+b") as f:
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 0xFF]))
    model = make_model(seed=7)
    model.optimizer.build(model.trainable_variables)
    before = _variables(model)
    with pytest.raises(CorruptCheckpointError, match="checksum mismatch"):
        _fit(model, backup)
    after = _variables(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert os.path.exists(data)  # left for inspection


def test_double_checkpoint_falls_back_to_the_previous_one(tmp_path):
    backup = str(tmp_path / "b")
    _fit(make_model(), backup, epochs=3, delete_checkpoint=False,
         double_checkpoint=True)
    newest = sorted(p for p in os.listdir(backup) if p.startswith("ckpt-"))[-1]
    os.truncate(os.path.join(backup, newest, "arrays.bin"), 5)
    model = make_model()
    x, y = make_data(40)
    cb = BackupAndRestore(backup, double_checkpoint=True)
    with pytest.warns(Warning, match="truncated"):
        kerasbackup.fit(model, x, y, batch_size=8, epochs=3, verbose=0,
                        callbacks=[cb])
    # The previous checkpoint was taken after epoch 2, so epoch 3 ran again.
    assert cb.restored_info["epoch"] == 2
    assert model.history.epoch == [0, 1, 2]


def test_mismatched_variables_leave_the_model_untouched(tmp_path):
    backup = str(tmp_path / "b")
    _fit(make_model(), backup, delete_checkpoint=False)
    model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(3),
                              keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.optimizer.build(model.trainable_variables)
    before = _variables(model)
    with pytest.raises(FingerprintMismatchError) as info:
        _fit(model, backup, allow_changes=True)
    assert re.search(r"model variables: 5 -> 4", str(info.value))
    after = _variables(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_fingerprint_lists_each_difference(tmp_path):
    backup = str(tmp_path / "b")
    _fit(make_model(), backup, delete_checkpoint=False)
    def adam_b08():
        return keras.optimizers.Adam(beta_1=0.8, learning_rate=keras.optimizers.schedules.ExponentialDecay(
            0.01, decay_steps=5, decay_rate=0.9))
    model = make_model(optimizer=adam_b08())
    x, y = make_data(40)
    with pytest.raises(FingerprintMismatchError) as info:
        kerasbackup.fit(model, x, y, batch_size=10, epochs=3, verbose=0,
                        callbacks=[BackupAndRestore(backup)])
    text = str(info.value)
    assert "optimizer beta_1: 0.9 -> 0.8" in text
    assert "batch size: 8 -> 10" in text
    diffs = {d[0] for d in info.value.differences}
    assert {"optimizer beta_1", "batch size"} <= diffs
    # Deliberate changes go through when named.
    model = make_model(optimizer=adam_b08())
    kerasbackup.fit(model, x, y, batch_size=10, epochs=3, verbose=0,
                    callbacks=[BackupAndRestore(backup, allow_changes=[
                        "optimizer beta_1", "batch size", "steps per epoch"])])
    assert model.history.epoch == [0, 1, 2]


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    backup = str(tmp_path / "b")
    _fit(make_model(), backup, delete_checkpoint=False)
    good = kerasbackup.backup_info(backup)
    assert [c["verified"] for c in good] == [True]

    def disk_full(phase, info):
        if phase == "arrays_written":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    x, y = make_data(40)
    with phase_hook(disk_full):
        with pytest.raises(kerasbackup.BackupWriteError, match="No space"):
            kerasbackup.fit(make_model(), x, y, batch_size=8, epochs=4, verbose=0,
                            callbacks=[BackupAndRestore(backup, delete_checkpoint=False)])
        # on_save_error="warn" trains on, warning at each failed save, also
        # under Python's default filter, which shows a repeated warning once.
        model = make_model()
        with warnings.catch_warnings(record=True) as seen:
            warnings.resetwarnings()
            kerasbackup.fit(model, x, y, batch_size=8, epochs=4, verbose=0,
                            callbacks=[BackupAndRestore(
                                backup, delete_checkpoint=False,
                                on_save_error="warn")])
        assert model.history.epoch == [0, 1, 2, 3]
        failures = [str(w.message) for w in seen
                    if issubclass(w.category, kerasbackup.SaveErrorWarning)]
        # It resumed from the good checkpoint (epoch 3): two saves were due.
        assert len(failures) == 2, failures
        for epoch, text in zip((4, 5), failures):
            assert f"(to resume at epoch {epoch} after batch 0)" in text
            assert "No space left on device" in text and "Training goes on" in text
    after = kerasbackup.backup_info(backup)
    assert [(c["epoch"], c["verified"]) for c in after] == [(2, True)]


def test_restored_epoch_does_not_leak_into_a_later_fit(tmp_path):
    backup = str(tmp_path / "b")
    model = make_model()
    x, y = make_data(40)
    _fit(model, backup, epochs=2, delete_checkpoint=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, epochs=3, verbose=0, batch_size=8,
                  callbacks=[BackupAndRestore(backup)])
    history = model.fit(x, y, epochs=2, verbose=0, batch_size=8)
    assert history.epoch == [0, 1]


@pytest.mark.parametrize("async_save", [True, False])
@pytest.mark.parametrize("state, where", [
    ({"seen": {1, 2}}, "'seen' is set {1, 2}"),
    ({"counts": {1: 2}}, "a key of 'counts' is int 1"),
    ({"log": [1, object]}, "'log'[1] is type"),
])
def test_a_callback_state_no_checkpoint_can_hold_is_a_classed_error(
        tmp_path, async_save, state, where):
    class Keeps(keras.callbacks.Callback):
        def get_state(self):
            return state

        def set_state(self, values):
            pass

    d = str(tmp_path / "b")
    x, y = make_data(40)
    with pytest.raises(CallbackStateError) as ei:
        kerasbackup.fit(make_model(), x, y, batch_size=8, epochs=2, verbose=0,
                        callbacks=[Keeps(), BackupAndRestore(d, async_save=async_save)])
    msg = str(ei.value)
    assert "Callback Keeps (position 0 in callbacks) cannot be backed up" in msg, msg
    assert where in msg, msg
    assert (ei.value.callback, ei.value.position) == ("Keeps", 0)
    assert kerasbackup.backup_info(d) == []  # nothing half-saved; the lock is free
    _fit(make_model(), d)


@pytest.mark.parametrize("on_save_error", ["stop", "warn"])
def test_backup_dir_removed_during_fit_stops_it_as_locked(tmp_path, on_save_error):
    # Not a write error that "warn" would train past: another process may
    # own a backup_dir made anew at that path.
    import shutil

    from kerasbackup import BackupLockedError

    d = str(tmp_path / "b")

    class Remover(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                shutil.rmtree(d)

    x, y = make_data(40)
    with pytest.raises(BackupLockedError, match="removed or replaced"):
        kerasbackup.fit(make_model(), x, y, batch_size=8, epochs=3, verbose=0,
                        callbacks=[BackupAndRestore(d, on_save_error=on_save_error),
                                   Remover()])


def test_delete_checkpoint_removes_only_our_files(tmp_path):
    backup = tmp_path / "b"
    _fit(make_model(), str(backup))
    assert not backup.exists()
    backup.mkdir()
    _fit(make_model(), str(backup), delete_checkpoint=False)
    (backup / "user-notes.txt").write_text("mine")
    _fit(make_model(), str(backup), epochs=3)
    assert sorted(os.listdir(backup)) == ["user-notes.txt"]


# ------------------------------------------------------------------ nesting


@pytest.mark.parametrize("driver", ["kerasbackup.fit", "model.fit"])
@pytest.mark.parametrize("same_callback", [False, True])
def test_nested_fit_on_the_same_backup_dir_is_refused(tmp_path, driver, same_callback):
    """A fit() started inside another on the same backup_dir gets
    BackupLockedError; the outer fit goes on unharmed (issue 10, defect 4)."""
    d = str(tmp_path / "b")
    x, y = make_data(40)
    outer = BackupAndRestore(d, save_freq=2)
    inner_model = make_model(seed=3)
    refused = []

    def train(model, callbacks, epochs):
        if driver == "kerasbackup.fit":
            return kerasbackup.fit(model, x, y, batch_size=8, epochs=epochs,
                                   verbose=0, callbacks=callbacks)
        return model.fit(x, y, batch_size=8, epochs=epochs, verbose=0,
                         callbacks=callbacks)

    class Nest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                inner = outer if same_callback else BackupAndRestore(d)
                try:
                    train(inner_model, [inner], 1)
                except kerasbackup.BackupLockedError as e:
                    refused.append(e)

    model = make_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, [outer, Nest()], 3)
    assert len(refused) == 1
    assert f"'{os.path.abspath(d)}' is in use" in str(refused[0])
    assert f"pid {os.getpid()} on host " in str(refused[0])
    assert ", started 20" in str(refused[0])
    assert not [w for w in caught if "Releasing" in str(w.message)]
    assert model.history.epoch == [0, 1, 2]
    assert int(model.optimizer.iterations.numpy()) == 3 * 5
    assert not os.path.exists(d)  # completed, checkpoint deleted
    # The refused fit trained nothing.
    assert int(inner_model.optimizer.iterations.numpy()) == 0
