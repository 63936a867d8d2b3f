"""An interrupted and resumed fit ends bit-identical to an uninterrupted one.

Each case trains the same small model twice from the same seed: once
straight through, once with interruptions (an exception raised from a
callback at a chosen epoch and batch, or kill -9 of a training process),
after which the "script" runs again and resumes from the backup directory.
Weights (seed-generator state included), optimizer variables, History and
the state of EarlyStopping / ReduceLROnPlateau must then be exactly equal.
"""

import os
import signal
import subprocess
import time
import warnings

import numpy as np
import pytest

import keras

import kerasbackup
from kerasbackup import FingerprintMismatchError, ResumeWarning
from kerasbackup.store import backup_info

import helpers_training as ht

X, Y = ht.make_data(70)  # 56 training samples: 7 batches of 8 per epoch
_REFERENCE = {}


def reference(**config):
    """The uninterrupted run for a configuration, computed once per session."""
    key = tuple(sorted(config.items()))
    if key not in _REFERENCE:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            snap, restarts, _ = ht.run_resumable(os.path.join(d, "b"), X, Y,
                                                 **config)
        assert restarts == 0
        _REFERENCE[key] = snap
    return _REFERENCE[key]


def resumed(tmp_path, points, **config):
    snap, restarts, caught = ht.run_resumable(str(tmp_path / "backup"), X, Y,
                                              points, **config)
    assert restarts == len(points)
    return snap, caught


# schedule=True: Adam on an ExponentialDecay schedule, EarlyStopping.
# schedule=False: Adam on a float rate that ReduceLROnPlateau lowers.
ES = dict(schedule=True, early_stopping=10)
RLR = dict(schedule=False, reduce_lr=True)
BOTH = dict(schedule=False, early_stopping=10, reduce_lr=True)

CASES = [
    # id, interruption points, config
    ("epoch-boundary", [(2, 0)], dict(save_freq="epoch", **ES)),
    ("epoch-end-before-save", [(1, "end")], dict(save_freq="epoch", **RLR)),
    ("mid-epoch-epoch-saves", [(2, 4)], dict(save_freq="epoch", **BOTH)),
    ("freq3-straddle-rlr", [(3, 1)], dict(save_freq=3, **RLR)),
    ("freq1-two-in-one-epoch", [(1, 2), (1, 5)], dict(save_freq=1, **BOTH)),
    ("freq3-two-in-one-epoch-no-save-between", [(1, 4), (1, 5)],
     dict(save_freq=3, **ES)),
    ("freq7-saved-after-last-batch", [(2, 0)], dict(save_freq=7, **RLR)),
    ("three-interruptions", [(0, 3), (2, "end"), (3, 6)],
     dict(save_freq=2, **BOTH)),
    ("early-stopping-stops", [(1, 3)],
     dict(save_freq=2, schedule=True, early_stopping=1)),
    ("early-stopping-restore-best", [(2, 2)],
     dict(save_freq=3, schedule=True, early_stopping=2,
          restore_best_weights=True, epochs=7)),
    ("async-mid-epoch", [(2, 5)], dict(save_freq=3, async_save=True, **BOTH)),
    ("async-two-in-one-epoch", [(1, 2), (1, 5)],
     dict(save_freq=1, async_save=True, **ES)),
]


@pytest.mark.parametrize("points,config", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_resume_is_bit_identical(tmp_path, points, config):
    expected = reference(**config)
    actual, caught = resumed(tmp_path, points, **config)
    ht.assert_same(actual, expected)
    assert not [w for w in caught if issubclass(w.category, ResumeWarning)]
    # delete_checkpoint=True: nothing is left once training completed.
    assert not (tmp_path / "backup").exists()


def test_reference_runs_exercise_the_callbacks():
    """The cases above mean something only if the callbacks change state."""
    rlr = reference(save_freq=3, **RLR)
    assert float(rlr["learning_rate"]) < 0.01  # ReduceLROnPlateau lowered it
    assert len(set(rlr["history"]["learning_rate"])) > 1
    es = reference(save_freq=3, **ES)
    assert es["callbacks"][0][1] > 0  # EarlyStopping is waiting
    assert es["callbacks"][0][2] != es["history"]["val_loss"][-1]
    stops = reference(save_freq=2, schedule=True, early_stopping=1)
    assert len(stops["epoch"]) < 5 and stops["callbacks"][0][4] > 0


# Regression: saves used to be taken in the callback's own on_epoch_end,
# before the callbacks listed after it had run theirs.
@pytest.mark.parametrize("save_freq", ["epoch", 3])
def test_resume_with_backup_listed_before_other_callbacks(tmp_path, save_freq):
    config = dict(save_freq=save_freq, backup_first=True, **BOTH)
    expected = reference(**config)
    actual, _ = resumed(tmp_path, [(3, 0)], **config)
    ht.assert_same(actual, expected)


def test_unbuilt_model_resumes(tmp_path):
    config = dict(save_freq=3, build=False, **ES)
    expected = reference(**config)
    actual, _ = resumed(tmp_path, [(1, 4)], **config)
    ht.assert_same(actual, expected)
    # Built from the first batch, it is the same model as a built one.
    built = reference(save_freq=3, **ES)
    ht.assert_same(actual, built)


# ------------------------------------------------------------------ model.fit()


def test_plain_model_fit_restores_weights_and_epoch(tmp_path):
    d = str(tmp_path / "backup")
    x_train, y_train = X[:56], Y[:56]
    # As in the reference example, the same callback object is passed again.
    backup = kerasbackup.BackupAndRestore(d, save_freq="epoch")

    model = ht.make_model()
    with pytest.raises(ht.Interrupted):
        model.fit(x_train, y_train, batch_size=8, epochs=5, verbose=0,
                  callbacks=[ht.interrupter([(2, 3)]), backup])
    backup.abort()  # model.fit() has no on_train_end after an error
    info = backup_info(d)
    assert [(c["epoch"], c["batch"]) for c in info] == [(2, 0)]
    with kerasbackup.CheckpointStore(d) as store:
        arrays, meta, _ = store.load()
    assert meta["epoch"] == 2

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = [np.array(v.numpy()) for v in self.model.variables]
            self.optimizer = [np.array(v.numpy())
                              for v in self.model.optimizer.variables]
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

    model = ht.make_model()
    probe = Probe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x_train, y_train, batch_size=8, epochs=5,
                            verbose=0, callbacks=[backup, probe])
    # At an epoch boundary nothing is skipped: no warning.
    resume_warnings = [w for w in caught if issubclass(w.category, ResumeWarning)]
    assert resume_warnings == [], [str(w.message) for w in caught]
    assert probe.epochs == [2, 3, 4]
    # Weights (Dropout's seed generator included) and optimizer restored.
    assert len(probe.weights) == len(meta["variables"]["model"])
    for i, w in enumerate(probe.weights):
        assert np.array_equal(w, arrays[f"model/{i:05d}"])
    for i, w in enumerate(probe.optimizer):
        assert np.array_equal(w, arrays[f"optimizer/{i:05d}"])
    assert history.epoch == [0, 1, 2, 3, 4]
    assert len(history.history["loss"]) == 5
    assert not os.path.exists(d)


def test_plain_model_fit_resumes_inside_an_epoch(tmp_path):
    d = str(tmp_path / "backup")
    backup = kerasbackup.BackupAndRestore(d, save_freq=2)
    model = ht.make_model()
    with pytest.raises(ht.Interrupted):
        model.fit(X[:56], Y[:56], batch_size=8, epochs=3, verbose=0,
                  callbacks=[ht.interrupter([(1, 5)]), backup])
    assert int(model.optimizer.iterations.numpy()) == 7 + 5
    model = ht.make_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X[:56], Y[:56], batch_size=8, epochs=3, verbose=0,
                  callbacks=[backup])
    # The save due after batch 5 of epoch 2 was still pending when the error
    # hit; it was published when the callback was used again. The resumed
    # fit draws the epoch's shuffle order again and skips those 5 batches
    # (no training, no callbacks) on every backend: 3 epochs of 7 steps, and
    # no warning (make_model() sets the global seeds).
    msgs = [str(w.message) for w in caught if issubclass(w.category, ResumeWarning)]
    assert msgs == []
    assert int(model.optimizer.iterations.numpy()) == 3 * 7
    assert model.history.epoch == [0, 1, 2]


def test_plain_model_fit_error_releases_the_backup_dir(tmp_path):
    # model.fit() calls no hook after an exception, so the first callback
    # still holds the lock; a new fit on the same thread releases it, quietly
    # (resuming in the same session is the usual way after an error).
    d = str(tmp_path / "backup")
    first = kerasbackup.BackupAndRestore(d, save_freq=2)
    model = ht.make_model()
    try:
        model.fit(X[:56], Y[:56], batch_size=8, epochs=3, verbose=0,
                  callbacks=[ht.interrupter([(1, 5)]), first])
    except ht.Interrupted:
        pass  # the callback stays referenced, as by a user's variable
    model = ht.make_model()
    assert first.is_running() is False and first.saver is not None  # still held
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X[:56], Y[:56], batch_size=8, epochs=3, verbose=0,
                  callbacks=[kerasbackup.BackupAndRestore(d, save_freq=2)])
    assert [str(w.message) for w in caught if issubclass(w.category, ResumeWarning)] == []
    assert model.history.epoch == [0, 1, 2]
    assert not first.is_running() and first.saver is None


# ------------------------------------------------------------------ fingerprint


def _interrupted_checkpoint(d, epochs=3, batch_size=8, **model_args):
    model = ht.make_model(**model_args)
    with pytest.raises(ht.Interrupted):
        kerasbackup.fit(model, X, Y, batch_size=batch_size, epochs=epochs,
                        verbose=0, validation_split=0.2,
                        callbacks=[ht.interrupter([(1, 2)]),
                                   kerasbackup.BackupAndRestore(d, save_freq=1)])


def _fit_again(d, model, batch_size=8, epochs=3, **backup_args):
    return kerasbackup.fit(
        model, X, Y, batch_size=batch_size, epochs=epochs, verbose=0,
        validation_split=0.2,
        callbacks=[kerasbackup.BackupAndRestore(d, save_freq=1, **backup_args)])


def test_fingerprint_mismatch_optimizer_and_batch_size(tmp_path):
    d = str(tmp_path / "backup")
    _interrupted_checkpoint(d)
    before = [(c["epoch"], c["batch"]) for c in backup_info(d)]

    other = ht.make_model(optimizer=keras.optimizers.Adam(
        learning_rate=keras.optimizers.schedules.ExponentialDecay(
            0.01, decay_steps=5, decay_rate=0.9), beta_1=0.8))
    with pytest.raises(FingerprintMismatchError) as err:
        _fit_again(d, other)
    assert err.value.differences == [("optimizer beta_1", "0.9", "0.8")]
    assert "  optimizer beta_1: 0.9 -> 0.8" in str(err.value)

    with pytest.raises(FingerprintMismatchError) as err:
        _fit_again(d, ht.make_model(), batch_size=16)
    assert ("batch size", 8, 16) in err.value.differences
    assert "  batch size: 8 -> 16" in str(err.value)
    assert ("steps per epoch", 7, 4) in err.value.differences
    # Refused resumes leave the checkpoint alone.
    assert [(c["epoch"], c["batch"]) for c in backup_info(d)] == before

    # allow_changes lets both through.
    model = ht.make_model()
    _fit_again(d, model, batch_size=16, allow_changes=["batch size", "steps per epoch"])
    assert model.history.epoch == [0, 1, 2]
    _interrupted_checkpoint(d)
    model = ht.make_model(optimizer=keras.optimizers.Adam(
        learning_rate=keras.optimizers.schedules.ExponentialDecay(
            0.01, decay_steps=5, decay_rate=0.9), beta_1=0.8))
    _fit_again(d, model, allow_changes=True)
    assert model.history.epoch == [0, 1, 2]


def test_raising_epochs_is_a_legitimate_resume(tmp_path):
    config = dict(save_freq=3, epochs=6, **ES)
    expected = reference(**config)
    d = str(tmp_path / "backup")
    # Train 4 epochs, keep the checkpoint, then ask for 6 in total.
    model = ht.make_model()
    kerasbackup.fit(model, X, Y, batch_size=8, epochs=4, verbose=0,
                    validation_split=0.2, shuffle=True,
                    callbacks=ht.make_callbacks(10) + [kerasbackup.BackupAndRestore(
                        d, save_freq=3, delete_checkpoint=False)])
    # An integer save_freq keeps the last periodic save (after batch 6 of
    # epoch 4), not the end of training: the resume redoes one batch.
    assert [(c["epoch"], c["batch"]) for c in backup_info(d)] == [(3, 6)]
    model = ht.make_model()
    siblings = ht.make_callbacks(10)
    kerasbackup.fit(model, X, Y, batch_size=8, epochs=6, verbose=0,
                    validation_split=0.2, shuffle=True,
                    callbacks=siblings + [kerasbackup.BackupAndRestore(d, save_freq=3)])
    ht.assert_same(ht.snapshot(model, siblings), expected)


# ------------------------------------------------------------------ kill -9


def _start(backup_dir, out, *extra):
    return subprocess.Popen(
        [ht.PYTHON, ht.TRAIN_SCRIPT, "--backup-dir", backup_dir, "--out", out,
         *extra],
        env=ht.child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def test_kill_9_at_random_times_then_resume(tmp_path):
    rng = ht.seeded_rng("test_kill_9_at_random_times_then_resume")
    args = ["--epochs", "8", "--save-freq", "2", "--batch-sleep", "0.03"]

    # The uninterrupted run, in a process of its own as well.
    ref_out = str(tmp_path / "reference.npz")
    proc = _start(str(tmp_path / "ref-backup"), ref_out, *args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err

    d = str(tmp_path / "backup")
    out = str(tmp_path / "resumed.npz")
    kills = []
    for attempt in range(3):
        before = ht.latest_checkpoint(d)
        # The 3rd save of each run is held until the kill: however slowly
        # this test runs, the job cannot finish first.
        proc = _start(d, out, "--pause-save", "3", *args)
        # Wait for progress: a checkpoint newer than the one resumed from.
        ht.wait_for(lambda: ht.latest_checkpoint(d) not in (None, before), proc,
                    what="a new checkpoint")
        time.sleep(rng.uniform(0, 0.25))  # any instant: the outcome must not depend on it
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        kills.append(ht.latest_checkpoint(d))
        # Every kill left checkpoints that verify.
        assert all(c["verified"] for c in backup_info(d))
    print("checkpoints after each kill:", kills)
    assert len(kills) == 3

    proc = _start(d, out, *args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    ht.assert_same_npz(out, ref_out)
    assert not os.path.exists(d)
