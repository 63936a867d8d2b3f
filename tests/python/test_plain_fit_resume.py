"""A plain model.fit() with BackupAndRestore resumes exactly (no driver).

R's keras3 calls `model.fit(**args)` itself; the callback alone must make
an interrupted and resumed fit end bit-identical to an uninterrupted one:
weights (Dropout's seed generator included), optimizer variables (40
steps, not 44), History and the data order (the shuffle of the resumed
epoch is drawn again from the generators of that epoch's begin). And a fit
that is not interrupted ends bit-identical with and without the callback.
Runs on this process' backend; test_other_backends.py runs it on the others.
"""

import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

import keras

import kerasbackup
from kerasbackup import errors
from kerasbackup.store import backup_info

import helpers_training as ht
import plain_fit_job as job

STEPS = 8  # per epoch
_REFERENCE = []


def reference():
    """The uninterrupted fit without the callback, once per session."""
    if not _REFERENCE:
        model = job.make_model()
        history = job.fit(model, [])
        _REFERENCE.append(ht.snapshot(model, history=history))
    return _REFERENCE[0]


def no_resume_warnings(caught):
    return [str(w.message) for w in caught
            if issubclass(w.category, kerasbackup.ResumeWarning)]


def test_uninterrupted_fit_is_the_same_with_and_without_the_callback(tmp_path):
    model = job.make_model()
    backup = kerasbackup.BackupAndRestore(str(tmp_path / "b"), save_freq=1)
    history = job.fit(model, [backup])
    snap = ht.snapshot(model, history=history)
    ht.assert_same(snap, reference())
    assert int(model.optimizer.iterations.numpy()) == 5 * STEPS


def test_interrupted_fit_resumes_exactly_in_the_same_process(tmp_path):
    d = str(tmp_path / "b")
    backup = kerasbackup.BackupAndRestore(d, save_freq=1)
    model = job.make_model()
    # The interrupter is listed after the backup: the save of the 5 batches
    # done is taken at its on_train_batch_begin(5), then fit() raises.
    with pytest.raises(ht.Interrupted):
        job.fit(model, [backup, ht.interrupter([(2, 5)])])
    # A new model.fit() on the same model object and callback.
    recorder = job.Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = job.fit(model, [backup, recorder.callback])
    assert no_resume_warnings(caught) == []
    assert int(model.optimizer.iterations.numpy()) == 5 * STEPS
    # The 5 done batches were skipped: no hook saw them.
    assert recorder.hooks == [(2, b) for b in range(5, STEPS)] + [
        (e, b) for e in (3, 4) for b in range(STEPS)]
    assert history.epoch == [0, 1, 2, 3, 4]
    ht.assert_same(ht.snapshot(model, history=history), reference())
    assert not os.path.exists(d)


def test_resumes_exactly_after_kill_9_in_a_fresh_process(tmp_path):
    d = str(tmp_path / "b")
    marker = str(tmp_path / "held")
    out = str(tmp_path / "final.npz")
    env = ht.child_env()
    env["KERAS_BACKEND"] = keras.backend.backend()
    script = os.path.join(ht.HERE, "plain_fit_job.py")
    child = subprocess.Popen(
        [sys.executable, script, "--backup-dir", d, "--out", out,
         "--hold-at", "2,5", "--marker", marker],
        cwd=ht.HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        ht.wait_for(lambda: os.path.exists(marker), child, what="the held job")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    info = backup_info(d)
    assert (info[-1]["epoch"], info[-1]["batch"]) == (2, 5)
    resumed = subprocess.run(
        [sys.executable, "-W", "error::kerasbackup.ResumeWarning", script,
         "--backup-dir", d, "--out", out],
        cwd=ht.HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-5000:]
    assert "ResumeWarning" not in resumed.stdout, resumed.stdout[-5000:]
    ref = str(tmp_path / "reference.npz")
    ht.snapshot_to_npz(reference(), ref)
    ht.assert_same_npz(out, ref)
    assert int(ht.npz_to_dict(out)["epoch"][-1]) == 4


# ------------------------------------------------------------- inexact inputs


def _interrupted(tmp_path, make_input, **fit_args):
    d = str(tmp_path / "b")
    backup = kerasbackup.BackupAndRestore(d, save_freq=1)
    model = job.make_model()
    with pytest.raises(ht.Interrupted):
        model.fit(make_input(), epochs=2, verbose=0,
                  callbacks=[backup, ht.interrupter([(1, 3)])], **fit_args)
    return backup


def _batches():
    x, y = job.data()
    while True:  # with steps_per_epoch, one generator runs across the epochs
        for i in range(0, 64, 8):
            yield x[i:i + 8], y[i:i + 8]


class _Batches(keras.utils.PyDataset):
    def __init__(self):
        super().__init__()
        self.x, self.y = job.data()

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return self.x[i * 8:(i + 1) * 8], self.y[i * 8:(i + 1) * 8]


def _dataset():
    import tensorflow as tf

    x, y = job.data()
    return tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(8)


INPUTS = [
    pytest.param(_Batches, "a keras.utils.PyDataset", {}, id="PyDataset"),
    pytest.param(_dataset, "a tf.data.Dataset", {}, id="tf.data"),
    pytest.param(_batches, "a Python generator", {"steps_per_epoch": 8},
                 id="generator"),
]


@pytest.mark.parametrize("make_input,name,fit_args", INPUTS)
def test_an_input_that_cannot_be_rewound_warns_once_through_the_sink(
        tmp_path, make_input, name, fit_args):
    backup = _interrupted(tmp_path, make_input, **fit_args)
    model = job.make_model()
    seen = []

    def sink(classes, message):
        seen.append((classes, message))
        return True

    previous = errors.set_warning_sink(sink)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(make_input(), epochs=2, verbose=0, callbacks=[backup],
                      **fit_args)
    finally:
        errors.set_warning_sink(previous)
    ours = [s for s in seen if "InexactResumeWarning" in s[0]]
    assert len(ours) == 1, seen
    classes, message = ours[0]
    assert classes == ["InexactResumeWarning", "ResumeWarning", "UserWarning", "Warning"]
    assert f"the input is {name}" in message
    assert "pass in-memory arrays" in message
    assert no_resume_warnings(caught) == []  # the sink handled it
    # The 3 done batches were skipped: 8 + 3 restored steps, 5 trained.
    assert int(model.optimizer.iterations.numpy()) == 2 * STEPS


def test_without_a_sink_the_warning_goes_to_warnings_warn(tmp_path):
    backup = _interrupted(tmp_path, _Batches)
    model = job.make_model()
    with pytest.warns(kerasbackup.InexactResumeWarning,
                      match="the input is a keras.utils.PyDataset") as caught:
        model.fit(_Batches(), epochs=2, verbose=0, callbacks=[backup])
    assert len([w for w in caught
                if issubclass(w.category, kerasbackup.InexactResumeWarning)]) == 1


def test_a_sink_that_declines_passes_the_warning_on(tmp_path):
    backup = _interrupted(tmp_path, _Batches)
    model = job.make_model()
    seen = []
    previous = errors.set_warning_sink(lambda c, m: seen.append(c) or False)
    try:
        with pytest.warns(kerasbackup.InexactResumeWarning):
            model.fit(_Batches(), epochs=2, verbose=0, callbacks=[backup])
    finally:
        errors.set_warning_sink(previous)
    assert ["InexactResumeWarning", "ResumeWarning", "UserWarning", "Warning"] in seen


def test_a_resume_on_tensorflow_needs_a_global_seed(tmp_path):
    # TensorFlow's model.fit() shuffles arrays with tf.random.shuffle, whose
    # order comes from the global seed; the other backends shuffle from
    # generators the checkpoint holds, and need none.
    d = str(tmp_path / "b")
    backup = kerasbackup.BackupAndRestore(d, save_freq=1)
    model = job.make_model()
    with pytest.raises(ht.Interrupted):
        job.fit(model, [backup, ht.interrupter([(1, 3)])], epochs=2)
    model = job.make_model()
    if keras.backend.backend() != "tensorflow":
        with warnings.catch_warnings():
            warnings.simplefilter("error", kerasbackup.ResumeWarning)
            job.fit(model, [backup], epochs=2)
    else:
        from tensorflow.python.eager import context

        saved = context.global_seed()
        context.context()._set_global_seed(None)  # as a script that sets none
        try:
            with pytest.warns(kerasbackup.InexactResumeWarning,
                              match="set a global seed with keras.utils.set_random_seed"):
                job.fit(model, [backup], epochs=2)
        finally:
            context.context()._set_global_seed(saved)
    assert int(model.optimizer.iterations.numpy()) == 2 * STEPS


# ------------------------------------------------------------- the sink


def warn_from_a_thread(message, category):
    import threading

    t = threading.Thread(target=errors.warn, args=(message, category))
    t.start()
    t.join()


def test_warnings_of_a_background_thread_wait_for_the_main_thread():
    seen = []
    previous = errors.set_warning_sink(lambda c, m: seen.append((c, m)) or True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn_from_a_thread("from the saver", errors.SaveErrorWarning)
            assert seen == []  # queued: the sink runs on the main thread only
            assert errors.flush_warnings() == 1
        assert seen == [(["SaveErrorWarning", "UserWarning", "Warning"],
                         "from the saver")]
        assert caught == []
    finally:
        errors.set_warning_sink(previous)


def test_without_a_sink_a_background_warning_goes_to_warnings_warn():
    assert errors.set_warning_sink(None) is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_from_a_thread("no sink", errors.StaleLockWarning)
    assert [(w.category, str(w.message)) for w in caught] == [
        (errors.StaleLockWarning, "no sink")]
    assert errors.flush_warnings() == 0


def test_the_sink_must_be_a_function_or_none():
    with pytest.raises(TypeError, match="a function or None"):
        errors.set_warning_sink("print")


class _RaiseAtEpochEnd(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise ht.Interrupted(f"after epoch {epoch}")


def test_backup_info_lists_the_save_due_when_a_later_callback_raised(tmp_path):
    # model.fit() calls no hook after the error, so the save due at the end
    # of epoch 1 is still pending when fit() returns; backup_info() in this
    # process publishes it first, and lists what a resume will find.
    d = str(tmp_path / "b")
    model = job.make_model()
    with pytest.raises(ht.Interrupted):
        job.fit(model, [kerasbackup.BackupAndRestore(d), _RaiseAtEpochEnd(1)])
    assert [(c["epoch"], c["batch"]) for c in backup_info(d)] == [(2, 0)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = job.fit(model, [kerasbackup.BackupAndRestore(d)])
    assert no_resume_warnings(caught) == []
    assert history.epoch == [0, 1, 2, 3, 4]
    ht.assert_same(ht.snapshot(model, history=history), reference())
