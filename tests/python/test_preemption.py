"""Preemption: a signal makes fit() finish the batch, save, and stop.

Documented behaviour (see the preemption section of the callback's docs):
- first signal: the current batch finishes; at the callback's next hook a
  checkpoint of that exact point is published (atomically) and fit() raises
  PreemptedError; the process exits non-zero; a rerun resumes exactly.
- a signal during a save: the save completes first.
- a second signal: PreemptionAbort at once; the checkpoint being written is
  abandoned, the previous one stays intact and verifies.
- a signal before the first batch (handlers are installed at the end of
  on_train_begin): fit() stops before any batch, with a checkpoint of the
  starting point.
- a signal after the last batch (during the last epoch's end or in
  on_train_end): PreemptedError, with a kept checkpoint of the final state,
  so the rerun returns at once.
- handlers installed before fit() (Python's and C-level ones) are back
  afterwards, whether fit() completed or was preempted; after an error in a
  plain model.fit() (which calls no hook) they step aside at the first
  signal.
"""

import json
import os
import signal
import subprocess
import tempfile
import time

import pytest

import kerasbackup
from kerasbackup import PreemptedError, PreemptionAbort
from kerasbackup.preemption import PreemptionWatcher
from kerasbackup.store import backup_info
from kerasbackup.testing import PauseSave

import helpers_training as ht

X, Y = ht.make_data(70)  # 7 batches of 8 per epoch
CONFIG = dict(schedule=False, early_stopping=10, reduce_lr=True, epochs=4)
_REFERENCE = []
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def reference():
    if not _REFERENCE:
        with tempfile.TemporaryDirectory() as d:
            snap, restarts, _ = ht.run_resumable(os.path.join(d, "b"), X, Y,
                                                 **CONFIG)
        _REFERENCE.append(snap)
    return _REFERENCE[0]


def handler_state():
    return {sig: (signal.getsignal(sig), ht.raw_sigaction(sig)) for sig in SIGNALS}


@pytest.fixture(autouse=True)
def check_handlers_come_back():
    """Every test: the handlers in place before are in place after."""
    before = handler_state()
    yield
    after = handler_state()
    for sig in SIGNALS:
        assert after[sig][0] is before[sig][0], f"{sig.name}: Python handler changed"
        assert after[sig][1] == before[sig][1], f"{sig.name}: sigaction changed"


def preempted_run(tmp_path, points, save_freq=False, async_save=False,
                  sig=signal.SIGTERM, backup_first=False, stopper=None,
                  on_stop=None, **extra):
    """Trains to completion, restarting after each PreemptedError."""
    errors = []
    stopper = stopper or ht.signaller(points, sig)
    snap, restarts, caught = ht.run_resumable(
        str(tmp_path / "backup"), X, Y, stopper=stopper,
        catch=(PreemptedError,), save_freq=save_freq, async_save=async_save,
        backup_first=backup_first,
        backup_args=dict(save_before_preemption=True,
                         preemption_signals=["SIGTERM", "SIGUSR1", "SIGINT"]),
        on_stop=lambda e: (errors.append(
            (e, [(c["epoch"], c["batch"], c["verified"])
                 for c in backup_info(str(tmp_path / "backup"))])),
            on_stop and on_stop(e)),
        **dict(CONFIG, **extra))
    assert restarts == len(errors)
    return snap, errors


# ------------------------------------------------------------------ in-process


@pytest.mark.parametrize("save_freq,async_save,sig", [
    (False, False, signal.SIGTERM),
    (3, False, signal.SIGUSR1),
    ("epoch", True, signal.SIGINT),
    (2, True, signal.SIGTERM),
])
def test_signal_mid_epoch_finishes_the_batch_saves_and_resumes_exactly(
        tmp_path, save_freq, async_save, sig):
    points = [(1, 3), (1, 5), (2, 0)]
    snap, errors = preempted_run(tmp_path, points, save_freq, async_save, sig)
    assert len(errors) == 3
    # The signal is sent between batches (from the hook before batch 3 of
    # epoch 1, ...): the stop comes before that batch when BackupAndRestore
    # has a hook of its own in between (a save was due), else after it.
    where = [(e.epoch, e.batch) for e, _ in errors]
    for (epoch, batch), got in zip(points, where):
        assert got in [(epoch, batch), (epoch, batch + 1)], where
    for (e, ckpts) in errors:
        assert e.signal_name == signal.Signals(sig).name
        assert e.backup_dir == str(tmp_path / "backup")
        assert ckpts[-1] == (e.epoch, e.batch, True)
        assert all(ok for _, _, ok in ckpts)
        assert str(e).startswith(
            f"Training was preempted by {e.signal_name}. The checkpoint in "
            f"'{e.backup_dir}' resumes at epoch {e.epoch + 1}, after batch "
            f"{e.batch} (")
        assert 0 <= e.seconds < 30
    ht.assert_same(snap, reference())


def test_signal_at_epoch_end(tmp_path):
    # (0, "end") is sent from on_epoch_end (before BackupAndRestore's), after
    # validation ran: the stop should come at the next hook, the start of
    # epoch 1, with the epoch's end complete.
    snap, errors = preempted_run(tmp_path, [(0, "end"), (2, "end")],
                                 save_freq="epoch")
    assert [(e.epoch, e.batch) for e, _ in errors] == [(1, 0), (3, 0)]
    ht.assert_same(snap, reference())


def test_signal_before_the_first_batch_stops_before_training(tmp_path):
    # Listed after BackupAndRestore, the Signaller's on_train_begin runs once
    # the handlers are installed.
    stopper = ht.signaller(["train_begin"])
    batches = []
    snap, errors = preempted_run(tmp_path, [], stopper=stopper,
                                 backup_first=True,
                                 on_stop=lambda e: batches.append(stopper.batches))
    assert [(e.epoch, e.batch) for e, _ in errors] == [(0, 0)]
    assert batches == [0]  # not a single batch ran
    assert errors[0][1] == [(0, 0, True)]  # the starting point was saved
    ht.assert_same(snap, reference())


def test_signal_before_the_first_batch_of_a_resumed_run(tmp_path):
    stopper = ht.signaller([(1, 2)])
    batches = []

    def on_stop(e):
        batches.append(stopper.batches)
        if len(batches) == 1:
            stopper.points.append("train_begin")  # at once in the next run

    snap, errors = preempted_run(tmp_path, [], save_freq=False,
                                 stopper=stopper, backup_first=True,
                                 on_stop=on_stop)
    first, second = [(e.epoch, e.batch) for e, _ in errors]
    assert second == first and batches[1] == batches[0]
    # Nothing new to save: the checkpoint it resumed from is kept as is.
    assert errors[1][1] == errors[0][1]
    ht.assert_same(snap, reference())


def test_signal_after_the_last_batch_is_not_lost(tmp_path):
    d = str(tmp_path / "backup")
    stopper = ht.signaller(["train_end"])
    model = ht.make_model(schedule=False)
    siblings = ht.make_callbacks(10, True)
    with pytest.raises(PreemptedError):
        kerasbackup.fit(model, X, Y, batch_size=8, epochs=2, verbose=0,
                        validation_split=0.2,
                        callbacks=[stopper] + siblings + [
                            kerasbackup.BackupAndRestore(
                                d, save_freq=False, save_before_preemption=True)])


def test_first_signal_during_a_save_lets_it_complete(tmp_path):
    d = str(tmp_path / "backup")
    calls = []

    def signal_during_second_save(phase, info):
        if phase == "staging":
            calls.append(info["path"])
            if len(calls) == 2:  # the second periodic save
                os.kill(os.getpid(), signal.SIGTERM)

    model = ht.make_model(schedule=False)
    with ht.phase_hook(signal_during_second_save), \
            pytest.raises(PreemptedError) as err:
        kerasbackup.fit(model, X, Y, batch_size=8, epochs=4, verbose=0,
                        validation_split=0.2,
                        callbacks=ht.make_callbacks(10, True) + [
                            kerasbackup.BackupAndRestore(
                                d, save_freq=3, save_before_preemption=True,
                                async_save=False)])
    # The save in flight (after batch 6 of epoch 0) was published, then the
    # stop came at the next hook with nothing new to save.
    assert (err.value.epoch, err.value.batch) == (0, 6)
    assert len(calls) == 2
    info = backup_info(d)
    assert [(c["epoch"], c["batch"], c["verified"]) for c in info] == [(0, 6, True)]


@pytest.mark.parametrize("async_save", [False, True])
def test_second_signal_aborts_at_once_and_keeps_the_checkpoint(tmp_path, async_save):
    d = str(tmp_path / "backup")
    stopper = ht.signaller([(1, 2)])
    backup = kerasbackup.BackupAndRestore(d, save_freq=4, save_before_preemption=True,
                                          async_save=async_save)
    # The third save is the preemption save: a second signal lands while it
    # is written. Written in the background, the hold ends once the main
    # thread has cancelled it.
    hold = PauseSave(tmp_path / "saving", tmp_path / "never", saves=[3],
                     phase="staging",
                     action=lambda: os.kill(os.getpid(), signal.SIGUSR1),
                     cancelled=lambda: backup.saver.cancelled)
    model = ht.make_model(schedule=False)
    with hold, pytest.raises(PreemptionAbort) as err:
        kerasbackup.fit(model, X, Y, batch_size=8, epochs=4, verbose=0,
                        validation_split=0.2,
                        callbacks=[stopper] + ht.make_callbacks(10, True) + [backup])
    # Escapes `except Exception`, yet is no KeyboardInterrupt (which
    # reticulate would turn into a bare R interrupt).
    assert not isinstance(err.value, (Exception, KeyboardInterrupt))
    assert isinstance(err.value, BaseException)
    assert "SIGUSR1 received after SIGTERM" in str(err.value)
    assert hold.held == [3]
    # Saves after batch 4 of epoch 0 and batch 1 of epoch 1; the preemption
    # save at (1, 3) was abandoned, and nothing half-written is left.
    info = backup_info(d)
    assert [(c["epoch"], c["batch"], c["verified"]) for c in info] == [(1, 1, True)]
    assert not [n for n in os.listdir(d) if n.startswith(".staging-")]
    # The directory is unlocked and resumes.
    snap, errors = preempted_run(tmp_path, [], save_freq=4)
    ht.assert_same(snap, reference())


def test_prior_python_handlers_are_chained_and_restored(tmp_path):
    seen = []

    def prior(signum, frame):
        seen.append(signum)

    saved = ht.save_sigactions([signal.SIGTERM, signal.SIGUSR1])
    signal.signal(signal.SIGTERM, prior)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        raw_before = {s: ht.raw_sigaction(s) for s in SIGNALS}
        d = str(tmp_path / "backup")
        with pytest.raises(PreemptedError):
            kerasbackup.fit(ht.make_model(), X, Y, batch_size=8, epochs=2,
                            verbose=0, callbacks=[
                                ht.signaller([(0, 2)]),
                                kerasbackup.BackupAndRestore(
                                    d, save_freq=False,
                                    save_before_preemption=True)])
        assert seen == [signal.SIGTERM]  # chained once, on the first signal
        assert signal.getsignal(signal.SIGTERM) is prior
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
        assert {s: ht.raw_sigaction(s) for s in SIGNALS} == raw_before
        # Completed fit, and a fit that fails with another error.
        kerasbackup.fit(ht.make_model(), X, Y, batch_size=8, epochs=2,
                        verbose=0, callbacks=[kerasbackup.BackupAndRestore(
                            d, save_freq=False, save_before_preemption=True)])
        with pytest.raises(ht.Interrupted):
            kerasbackup.fit(ht.make_model(), X, Y, batch_size=8, epochs=2,
                            verbose=0, callbacks=[
                                ht.interrupter([(1, 1)]),
                                kerasbackup.BackupAndRestore(
                                    str(tmp_path / "b2"), save_freq=False,
                                    save_before_preemption=True)])
        assert signal.getsignal(signal.SIGTERM) is prior
        assert {s: ht.raw_sigaction(s) for s in SIGNALS} == raw_before
        assert seen == [signal.SIGTERM]
    finally:
        ht.restore_sigactions(saved)


def test_c_level_handler_is_restored_even_after_two_fits():
    """A handler Python did not install (as R's) survives repeated fits.

    Python reports such a handler as None; after one restore its table says
    SIG_DFL, and a second install must not take that for the truth.
    """
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    sig = signal.SIGUSR2
    # A C-level handler Python does not know about: libc's own `abort`
    # address stands in for it (it is never called).
    saved = ctypes.create_string_buffer(512)
    libc.sigaction(sig, None, saved)
    fake = ctypes.create_string_buffer(512)
    ctypes.memmove(fake, saved, 512)
    addr = ctypes.cast(libc.abort, ctypes.c_void_p).value
    ctypes.memmove(fake, ctypes.byref(ctypes.c_void_p(addr)), 8)
    assert libc.sigaction(sig, fake, None) == 0
    try:
        want = ht.raw_sigaction(sig)
        for _ in range(2):
            watcher = PreemptionWatcher(["SIGUSR2"])
            watcher.install()
            assert ht.raw_sigaction(sig) != want
            watcher.restore()
            assert ht.raw_sigaction(sig) == want
    finally:
        libc.sigaction(sig, saved, None)
        signal.signal(sig, signal.SIG_DFL)


def test_save_freq_false_needs_save_before_preemption(tmp_path):
    with pytest.raises(ValueError) as err:
        kerasbackup.BackupAndRestore(str(tmp_path), save_freq=False)
    assert str(err.value) == (
        "`save_freq=False` turns periodic saves off, which only makes sense "
        "with `save_before_preemption=True`: without it nothing would ever be "
        "saved. Received: save_freq=False, save_before_preemption=False")
    with pytest.raises(ValueError, match=r"Received: 'SIGKILL'"):
        kerasbackup.BackupAndRestore(str(tmp_path), save_before_preemption=True,
                                     preemption_signals=["SIGKILL"])


def test_plain_model_fit_error_leaves_handlers_transparent(tmp_path):
    # After an error in a plain model.fit() no hook runs, so our handler is
    # still installed; the first signal outside fit() restores the previous
    # handlers and hands the signal to them.
    saved = ht.save_sigactions([signal.SIGUSR1])
    seen = []
    signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
    try:
        before = handler_state()
        backup = kerasbackup.BackupAndRestore(
            str(tmp_path / "b"), save_freq=False, save_before_preemption=True)
        with pytest.raises(ht.Interrupted):
            ht.make_model().fit(X[:56], Y[:56], batch_size=8, epochs=2,
                                verbose=0,
                                callbacks=[ht.interrupter([(0, 2)]), backup])
        assert not backup.is_running()
        os.kill(os.getpid(), signal.SIGUSR1)
        ht.wait_for(lambda: seen, what="the previous SIGUSR1 handler to run")
        assert seen == [signal.SIGUSR1]
        assert handler_state() == before
        backup.abort()
    finally:
        ht.restore_sigactions(saved)


# ------------------------------------------------------------------ processes


def _start(backup_dir, out, result, *extra):
    return subprocess.Popen(
        [ht.PYTHON, ht.TRAIN_SCRIPT, "--backup-dir", backup_dir, "--out", out,
         "--result", result, "--preempt", *extra],
        env=ht.child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


ARGS = ["--epochs", "6", "--save-freq", "3", "--batch-sleep", "0.02"]


@pytest.fixture(scope="module")
def process_reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("reference")
    out = str(d / "reference.npz")
    proc = _start(str(d / "backup"), out, str(d / "result.json"), *ARGS)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


def _release(path):
    with open(path, "w"):
        pass


def test_sigterm_at_random_instants_then_resume(tmp_path, process_reference):
    rng = ht.seeded_rng("test_sigterm_at_random_instants_then_resume")
    d = str(tmp_path / "backup")
    out, result = str(tmp_path / "out.npz"), str(tmp_path / "result.json")
    stops = []
    for attempt in range(3):
        ready = str(tmp_path / f"ready-{attempt}")
        before = ht.latest_checkpoint(d)
        # The 1st save of the run is held (attempt 1: the signal lands while
        # it is in flight), or the 3rd (a gate: however slowly this test
        # runs, the job cannot finish before the signal).
        held = 1 if attempt == 1 else 3
        proc = _start(d, out, result, "--ready-file", ready,
                      "--pause-save", str(held), *ARGS)
        ht.wait_for(lambda: os.path.exists(ready), proc, what="the ready file")
        if attempt == 1:
            # During a save: its data is written, nothing is published yet.
            ht.wait_for(lambda: os.path.exists(d + ".saving"), proc,
                        what="a save in flight")
        else:
            ht.wait_for(lambda: ht.latest_checkpoint(d) not in (None, before),
                        proc, what="a new checkpoint")
            # Any instant is fine: the outcome must not depend on it.
            time.sleep(rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGTERM)
        _release(f"{d}.go-{held}")
        _, err = proc.communicate(timeout=120)
        os.unlink(f"{d}.go-{held}")  # else the next attempt's gate stands open
        assert proc.returncode == 1, err
        assert "PreemptedError: Training was preempted by SIGTERM" in err
        with open(result) as f:
            info = json.load(f)
        assert info["type"] == "PreemptedError"
        assert ht.latest_checkpoint(d) == (info["epoch"], info["batch"])
        assert all(c["verified"] for c in backup_info(d))
        stops.append((info["epoch"], info["batch"]))
    print("stops:", stops)
    assert len(set(stops)) == 3, stops
    proc = _start(d, out, result, *ARGS)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    ht.assert_same_npz(out, process_reference)


def test_second_sigterm_during_the_preemption_save(tmp_path, process_reference):
    d = str(tmp_path / "backup")
    out, result = str(tmp_path / "out.npz"), str(tmp_path / "result.json")
    # Only preemption saves, so every stop writes a checkpoint of its own.
    args = [a if a != "3" else "false" for a in ARGS]

    # A first preemption leaves checkpoint A.
    ready = str(tmp_path / "ready-1")
    proc = _start(d, out, result, "--ready-file", ready, "--hold-after-ready", *args)
    ht.wait_for(lambda: os.path.exists(ready), proc, what="the ready file")
    proc.send_signal(signal.SIGTERM)
    _release(ready + ".release")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    first = ht.latest_checkpoint(d)
    assert first is not None

    # Rerun; SIGTERM, and a second one while the preemption save is written.
    ready = str(tmp_path / "ready-2")
    proc = _start(d, out, result, "--ready-file", ready, "--hold-after-ready",
                  "--pause-save", "1", *args)
    ht.wait_for(lambda: os.path.exists(ready), proc, what="the ready file")
    proc.send_signal(signal.SIGTERM)
    _release(ready + ".release")
    ht.wait_for(lambda: os.path.exists(d + ".saving"), proc,
                what="the preemption save")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    with open(result) as f:
        info = json.load(f)
    assert info["type"] == "PreemptionAbort", info
    assert "KeyboardInterrupt" not in info["mro"], info
    assert "Exception" not in info["mro"], info
    assert "BaseException" in info["mro"], info
    assert "SIGTERM received again" in info["message"]
    # The abandoned save left checkpoint A intact, and nothing half-written.
    found = backup_info(d)
    assert [(c["epoch"], c["batch"]) for c in found] == [first]
    assert all(c["verified"] for c in found)
    assert not [n for n in os.listdir(d) if n.startswith(".staging-")]

    proc = _start(d, out, result, *args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    ht.assert_same_npz(out, process_reference)


def test_second_signal_cancels_an_asynchronous_preemption_save(tmp_path):
    # The second signal lands while the background thread writes the
    # preemption checkpoint: that write must not be published afterwards.
    import keras

    d = str(tmp_path / "backup")
    backup = kerasbackup.BackupAndRestore(d, save_freq=False,
                                          save_before_preemption=True,
                                          async_save=True)

    class Signaller(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    # Held just before publishing; the second signal, sent from the writing
    # thread, is handled on the main thread, which cancels the write.
    hold = PauseSave(tmp_path / "saving", tmp_path / "never", saves=[1],
                     phase="manifest_written",
                     action=lambda: os.kill(os.getpid(), signal.SIGTERM),
                     cancelled=lambda: backup.saver.cancelled)
    with hold, pytest.raises(PreemptionAbort, match="received again"):
        kerasbackup.fit(ht.make_model(), X, Y, batch_size=8, epochs=3, verbose=0,
                        callbacks=[Signaller(), backup])
    assert hold.held == [1]
    # fit() returned only after the cancelled write had ended.
    assert backup_info(d) == []
    assert not [p for p in os.listdir(d) if p.startswith(".staging")]


# ------------------------------------------------------------------ after the last batch


def _signal_at(phase_name, save_number=None):
    """A phase hook that sends SIGTERM once, at `phase_name` (of save N)."""
    state = {"saves": 0, "sent": False}

    def hook(phase, info):
        if phase == "staging":
            state["saves"] += 1
        if phase == phase_name and not state["sent"] and (
                save_number is None or state["saves"] == save_number):
            state["sent"] = True
            os.kill(os.getpid(), signal.SIGTERM)

    return hook, state


@pytest.mark.parametrize("phase,delete_checkpoint,async_save", [
    ("arrays_chunk", False, False),  # during the final save (the 2nd of 2 epochs)
    ("arrays_chunk", False, True),
    ("deleting", True, True),  # during the clean-up
])
def test_a_signal_during_the_final_save_or_the_clean_up_ends_as_preemption(
        tmp_path, phase, delete_checkpoint, async_save):
    """Issue 10, defect 8: not swallowed; the end state is kept, the rerun returns at once."""
    d = str(tmp_path / "backup")
    hook, sent = _signal_at(phase, save_number=None if delete_checkpoint else 2)
    with ht.phase_hook(hook), pytest.raises(PreemptedError) as err:
        kerasbackup.fit(ht.make_model(), X, Y, batch_size=8, epochs=2, verbose=0,
                        callbacks=[kerasbackup.BackupAndRestore(
                            d, delete_checkpoint=delete_checkpoint,
                            save_before_preemption=True, async_save=async_save)])
    assert sent["sent"]
    # After the clean-up had begun, a checkpoint of the end state is written again.
    assert (err.value.epoch, err.value.batch) == (2, 0)
    assert [(c["epoch"], c["batch"], c["verified"]) for c in backup_info(d)] == [
        (2, 0, True)]
    model = ht.make_model()
    kerasbackup.fit(model, X, Y, batch_size=8, epochs=2, verbose=0,
                    callbacks=[kerasbackup.BackupAndRestore(d)])
    assert int(model.optimizer.iterations.numpy()) == 2 * 9  # restored, none run
    assert model.history.epoch == [0, 1]
    assert not os.path.exists(d)
