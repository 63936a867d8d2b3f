"""The BackupAndRestore callback: crash-safe, exactly resumable training.

The callback wires Keras' hooks to four parts with one job each: the save
policy (policy.py: when a save is due), the training state (state.py: what a
checkpoint holds, checked before anything is restored), the saver (saver.py:
one write at a time, in the background) and the store (store: the atomic,
verified files). A training driver (kerasbackup.fit()) attaches with
`attach()`; a plain `model.fit()` needs nothing.
"""

import dataclasses
import os
import socket
import sys
import threading
import time
import weakref
from datetime import datetime, timezone

import numpy as np

import keras

from kerasbackup import distributed, errors, replicas
from kerasbackup import state as training_state
from kerasbackup.errors import (InexactResumeWarning, PreemptedError, ResumeWarning,
                                SaveErrorWarning, UnbuiltStateError)
from kerasbackup.policy import SavePolicy
from kerasbackup.preemption import PreemptionAbort
from kerasbackup.saver import AsyncSaver
from kerasbackup.store import (
    BackupLockedError, BackupWriteError, add_listing_hook, backup_dir_key,
    check_backup_dir, is_url, load_published, open_store)
from kerasbackup.store.objstore import DEFAULT_LEASE_TTL

_SAVE_ERROR_MODES = ("stop", "warn")
# A restarted job may find the lease of its killed predecessor (on another
# host) for up to the lease's time to live; by default it waits that out,
# with room for clocks that differ a little. R's default is the same (tested).
DEFAULT_LEASE_WAIT = 1.5 * DEFAULT_LEASE_TTL


def _check_args(backup_dir, save_freq, double_checkpoint, delete_checkpoint,
                save_before_preemption, preemption_signals, async_save,
                on_save_error, allow_changes, storage_options, lease_wait):
    if not isinstance(backup_dir, (str, os.PathLike)) or not str(backup_dir):
        raise ValueError(
            "Invalid value for argument `backup_dir`. Expected a non-empty "
            f"path or URL. Received: backup_dir={backup_dir!r}"
        )
    try:
        check_backup_dir(backup_dir)
    except ValueError as e:
        raise ValueError(f"Invalid value for argument `backup_dir`. {e}") from None
    if storage_options is not None and not (
        isinstance(storage_options, dict) and all(isinstance(k, str) for k in storage_options)
    ):
        raise ValueError(
            "Invalid value for argument `storage_options`. Expected None or a "
            "dict of fsspec options with string keys. Received: a "
            f"{type(storage_options).__name__}"  # never the values: credentials
        )
    if storage_options and not is_url(backup_dir):
        raise ValueError(
            "Invalid value for argument `storage_options`. It applies to a "
            "backup_dir URL (s3://, gs://, ...), not to the local path "
            f"backup_dir={os.fspath(backup_dir)!r}"
        )
    if not (isinstance(lease_wait, (int, float, np.integer, np.floating))
            and not isinstance(lease_wait, (bool, np.bool_))
            and 0 <= lease_wait < float("inf")):
        raise ValueError(
            "Invalid value for argument `lease_wait`. Expected a number of "
            f"seconds >= 0. Received: lease_wait={lease_wait!r}"
        )
    is_int = isinstance(save_freq, (int, np.integer)) and not isinstance(
        save_freq, (bool, np.bool_)
    )
    if not (save_freq == "epoch" or save_freq is False or (is_int and save_freq > 0)):
        raise ValueError(
            "Invalid value for argument `save_freq`. Expected 'epoch', a "
            f"positive integer or False. Received: save_freq={save_freq!r}"
        )
    if save_freq is False and not save_before_preemption:
        raise ValueError(
            "`save_freq=False` turns periodic saves off, which only makes "
            "sense with `save_before_preemption=True`: without it nothing "
            "would ever be saved. Received: save_freq=False, "
            f"save_before_preemption={save_before_preemption!r}"
        )
    for name, value in (
        ("double_checkpoint", double_checkpoint),
        ("delete_checkpoint", delete_checkpoint),
        ("save_before_preemption", save_before_preemption),
        ("async_save", async_save),
    ):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected True or "
                f"False. Received: {name}={value!r}"
            )
    if on_save_error not in _SAVE_ERROR_MODES:
        raise ValueError(
            "Invalid value for argument `on_save_error`. Expected 'stop' or "
            f"'warn'. Received: on_save_error={on_save_error!r}"
        )
    if not (isinstance(allow_changes, bool) or (
        isinstance(allow_changes, (list, tuple))
        and all(isinstance(x, str) for x in allow_changes)
    )):
        raise ValueError(
            "Invalid value for argument `allow_changes`. Expected True, False "
            f"or a list of item names. Received: allow_changes={allow_changes!r}"
        )
    from kerasbackup.preemption import signal_numbers

    signal_numbers(preemption_signals)  # raises ValueError for unknown names


@dataclasses.dataclass
class DriverRun:
    """What a training driver tells the callback, through `attach()`.

    Attributes:
        callbacks: the fit()'s full callback list; the state of the others
            is saved and restored by position.
        fingerprint: fit settings a resume must keep (batch size, ...).
        shuffle_seed: the data-order seed; a driver that resumes sets it to
            the restored `restored_state.shuffle_seed`.
    """

    callbacks: list
    fingerprint: dict = dataclasses.field(default_factory=dict)
    shuffle_seed: object = None


class _Fit:
    """Everything that lives for one fit(): opened at train begin, closed at its end."""

    def __init__(self, callbacks, callback_list):
        self.started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.thread = threading.get_ident()
        self.callbacks = callbacks  # the siblings whose state is saved
        self.callback_list = callback_list  # model.fit()'s, to tell if it still runs
        self.cluster = distributed.LocalCluster()  # the workers (distributed.py)
        self.stop = None  # a StopAgreement: when preemption stops every worker
        self.store = None  # the chief's only: other workers never write
        self.saver = None
        self.watcher = None
        self.progress = None  # a TrainingState: where training is, history
        self.plan = None  # the checked checkpoint restored at train begin
        self.pending_callbacks = False
        self.pending_save = None  # (epoch, batch, include_metrics, iterations)
        self.epoch_logs = None
        self.unsettled = False
        self.resume = None  # a _SkipDoneBatches while model.fit() resumes inside an epoch
        self.epoch_rng = None  # model.fit(): the generators at the running epoch's begin
        self.save_at_epoch_end = False
        self.warned = set()


# backup_dir -> the callback holding it in this process. Only a plain
# model.fit() needs this: it calls no hook when it raises, so its callback
# keeps the lock, and a later fit on the same directory finds it here.
_HOLDERS = weakref.WeakValueDictionary()


def release_dead_fit(backup_dir, keep=None):
    """Ends the hold of a model.fit() on backup_dir that raised in this process.

    Its due save is published first (see BackupAndRestore.abort()). A hold
    from a fit still running, or by `keep`, stays.
    """
    holder = _HOLDERS.get(backup_dir_key(backup_dir))
    if holder is None or holder is keep or holder._fit is None or holder.is_running():
        return
    holder.abort()


# backup_info() in this process lists what a resume would find.
add_listing_hook(release_dead_fit)


class BackupAndRestore(keras.callbacks.Callback):
    """Backs up the whole training state so an interrupted fit resumes exactly.

    Each save writes a complete checkpoint (model and optimizer variables,
    random generators, epoch and batch, history, the state of the other
    callbacks) into a staging directory, fsyncs it and publishes it with one
    atomic rename, so a kill at any instant leaves a checkpoint that verifies.
    At train begin the newest checkpoint that verifies and fits the model is
    restored, all or nothing. The run continues at the exact next batch in
    the same data order, with `kerasbackup.fit()` and with a plain
    `model.fit()` of in-memory arrays: there the batches the checkpoint had
    done in its epoch are drawn from the data again (in the same shuffle
    order, the generators set back to the epoch's begin) and skipped, with
    no training and no callbacks. (On TensorFlow that order comes from the
    global seed: set one with `keras.utils.set_random_seed()`.) Inputs that
    cannot be rewound (tf.data, generators, PyDataset) are skipped alike,
    in the order they give now, with an `InexactResumeWarning`.

    Args:
        backup_dir: path of the directory for the checkpoints. It must be
            empty, missing, or a directory this callback wrote; it cannot be
            shared with another run or another callback. A URL
            (`s3://bucket/prefix`, `gs://bucket/prefix`) keeps the
            checkpoints in an object store, with the same guarantees (see
            `kerasbackup.store.objstore`); `file://` URLs are local paths.
        save_freq: `"epoch"` to save at the end of each epoch, a positive
            integer to save every `save_freq` batches (counted as Keras
            counts them under `steps_per_execution`), or `False` to save only
            when a preemption signal arrives (needs `save_before_preemption`).
        double_checkpoint: keep the previous checkpoint too, as a fallback if
            the newest one fails verification.
        delete_checkpoint: delete the checkpoints once training completes.
        save_before_preemption: on one of `preemption_signals`, finish the
            current batch, save, and stop with `PreemptedError`.
        preemption_signals: signal names handled when
            `save_before_preemption=True` (default: SIGTERM and SIGUSR1).
        async_save: write checkpoints in a background thread (the default);
            training only waits for the copy to host memory. One save is in
            flight at a time: a save that falls due meanwhile waits for it,
            and fit() waits for the last one. A failed background save
            raises at the next batch. The host copy (one state's size) is
            kept for the next fit() of the process; see
            `saver.release_host_buffers()`.
        on_save_error: `"stop"` raises when a save fails; `"warn"` warns
            (`SaveErrorWarning`) and trains on. The previous checkpoint is
            kept either way.
        allow_changes: `True`, or a list of fingerprint items (e.g.
            `["optimizer"]`) that may differ from the checkpoint's.
        storage_options: for a URL backup_dir, fsspec options (credentials,
            `endpoint_url`, ...), passed to s3fs or gcsfs. By default those
            find credentials and endpoints themselves (AWS environment and
            profiles, `AWS_ENDPOINT_URL`; Google application-default
            credentials, `STORAGE_EMULATOR_HOST`). Never printed, logged or
            written into a checkpoint.
        lease_wait: for a URL backup_dir, seconds train begin waits for
            another writer's lease to be released or to expire before it
            raises `BackupLockedError`. A job restarted after its previous
            run was killed on another host (a preempted pod) finds that
            run's lease until it expires (at most 60 s after its last
            renewal), so the default, 90 s, lets it resume; 0 refuses at
            once.

    Example:

    >>> callback = BackupAndRestore(backup_dir="/tmp/backup")
    >>> model.fit(x, y, epochs=10, callbacks=[callback])
    """

    def __init__(
        self,
        backup_dir,
        save_freq="epoch",
        double_checkpoint=False,
        delete_checkpoint=True,
        save_before_preemption=False,
        preemption_signals=None,
        async_save=True,
        on_save_error="stop",
        allow_changes=False,
        storage_options=None,
        lease_wait=DEFAULT_LEASE_WAIT,
    ):
        super().__init__()
        from kerasbackup.preemption import DEFAULT_SIGNALS

        if isinstance(allow_changes, str):
            allow_changes = [allow_changes]
        if preemption_signals is None:
            preemption_signals = DEFAULT_SIGNALS
        if isinstance(preemption_signals, str):
            preemption_signals = [preemption_signals]
        _check_args(backup_dir, save_freq, double_checkpoint, delete_checkpoint,
                    save_before_preemption, preemption_signals, async_save,
                    on_save_error, allow_changes, storage_options, lease_wait)
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq if save_freq in ("epoch", False) else int(save_freq)
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self.save_before_preemption = bool(save_before_preemption)
        self.preemption_signals = tuple(preemption_signals)
        self.async_save = bool(async_save)
        self.on_save_error = on_save_error
        self.allow_changes = allow_changes
        self.storage_options = dict(storage_options or {})
        self.lease_wait = float(lease_wait)
        self.policy = SavePolicy(self.save_freq)
        #: The TrainingState restored by the latest fit(), or None.
        self.restored_state = None
        #: The store's description of the checkpoint it came from, or None.
        self.restored_info = None
        self._driver = None
        self._fit = None

    # ------------------------------------------------------------ driver

    def attach(self, run):
        """Lets a training driver take part: `run` is a DriverRun.

        Raises BackupLockedError if this callback is already part of a
        running fit() (a fit nested in another on the same callback).
        """
        self._refuse_or_release_own()
        self._driver = run

    def detach(self):
        """Ends the driver's part; call it when the driver's fit() ends."""
        self._driver = None

    def set_model(self, model):
        # Keras hands every callback its model when a fit() builds its
        # callback list, before on_train_begin. Within a running fit that
        # would swap the model under it (a nested fit with this callback).
        if self._fit is not None and model is not getattr(self, "_model", None):
            self._refuse_or_release_own()
        super().set_model(model)

    @property
    def saver(self):
        """The AsyncSaver of the running fit() (None outside fit())."""
        return self._fit.saver if self._fit is not None else None

    def is_running(self):
        """Whether the fit() this callback was started for is still running.

        A driver says so by staying attached. For a plain model.fit(), the
        fit runs as long as its callback list is still referenced from the
        stack of its thread; one that raised (Keras then calls no hook) has
        left it.
        """
        fit = self._fit
        if fit is None:
            return False
        if self._driver is not None or fit.callback_list is None:
            return True
        if fit.thread != threading.get_ident():
            return fit.thread in sys._current_frames()
        return _on_stack(fit.callback_list, sys._getframe(1))

    # ------------------------------------------------------------ hooks

    def on_train_begin(self, logs=None):
        errors.flush_warnings()
        if self._driver is None:
            self._refuse_or_release_own()
        self._release_stale_holder()
        callback_list = None
        if self._driver is not None:
            callbacks = list(self._driver.callbacks)
        else:
            callback_list = _calling_callback_list()
            callbacks = list(callback_list.callbacks) if callback_list else None
        fit = self._fit = _Fit(callbacks, callback_list)
        self.restored_state = None
        self.restored_info = None
        self.policy.start()  # a restore below picks up the saved count
        try:
            fit.cluster = distributed.cluster_for(self.model)
            fit.stop = distributed.StopAgreement(fit.cluster)
            if fit.cluster.is_chief:
                fit.store = open_store(self.backup_dir,
                                       keep=2 if self.double_checkpoint else 1,
                                       storage_options=self.storage_options,
                                       lease_wait=self.lease_wait)
                fit.store.open()
                _HOLDERS[backup_dir_key(self.backup_dir)] = self
            fit.saver = AsyncSaver(self.async_save)
            with distributed.scope(self.model):
                self._restore()
            if self.save_before_preemption:
                from kerasbackup.preemption import PreemptionWatcher

                fit.watcher = PreemptionWatcher(self.preemption_signals,
                                                is_live=self.is_running)
                fit.watcher.install()
        except BaseException:
            self._end_fit()
            raise

    # Saves and preemption stops are taken at the NEXT hook, once every
    # other callback has finished the batch or epoch: their state and the
    # logs they add (e.g. ReduceLROnPlateau's learning_rate) are then final.

    def on_epoch_begin(self, epoch, logs=None):
        fit = self._fit
        errors.flush_warnings()
        self._settle(agree=True)
        fit.progress.epoch = epoch
        resumed = fit.plan is not None and fit.plan.state.epoch == epoch
        batch = fit.plan.state.batch if resumed else 0
        self.policy.epoch_begin(batch)
        if self._driver is None:
            # model.fit() makes the epoch's data iterator after this hook,
            # and it draws the shuffle order from these generators. A save
            # inside the epoch keeps them (read only: nothing is drawn).
            fit.epoch_rng = training_state.capture_rng()
        if resumed:
            plan, fit.plan = fit.plan, None
            if batch > 0 and self._driver is not None:
                self._restore_metrics(plan)  # the driver skips the done batches
            elif batch > 0:
                self._resume_inside_epoch(plan)

    def on_train_batch_begin(self, batch, logs=None):
        fit = self._fit
        if fit.resume is not None:
            self._finish_resume()
        if fit.unsettled:
            self._settle()

    def on_train_batch_end(self, batch, logs=None):
        fit = self._fit
        params = self.params or {}
        steps = params.get("steps")
        if self.policy.batch_end(batch, steps):
            done = self.policy.batches_in_epoch
            # After the last batch of training, with delete_checkpoint, the
            # save would be deleted as soon as fit() returns.
            if self.delete_checkpoint and done == steps \
                    and params.get("epochs") == fit.progress.epoch + 1:
                pass
            elif self._driver is None and steps and done >= steps:
                # model.fit() cannot resume between an epoch's last batch
                # and its end (its epoch logs come from the last step): the
                # save is taken at the end of the epoch instead.
                fit.save_at_epoch_end = True
            else:
                fit.pending_save = (fit.progress.epoch, done, True,
                                    self._iterations())
                fit.unsettled = True
        fit.progress.batch = self.policy.batches_in_epoch
        if fit.watcher is not None and fit.stop.batch_end(fit.watcher.requested):
            fit.unsettled = True

    def on_test_begin(self, logs=None):
        # fit()'s validation is about to reset the metrics: a save due after
        # the epoch's last batch must capture them first.
        fit = self._fit
        if fit is None:
            return
        errors.flush_warnings()
        if fit.resume is not None:
            self._finish_resume()
        if fit.unsettled:
            # A preemption stop waits for the epoch's end under model.fit(),
            # which cannot resume between the last batch and the epoch end.
            self._settle(preempt=self._driver is not None)

    def on_epoch_end(self, epoch, logs=None):
        fit = self._fit
        if fit.resume is not None:
            if logs is not None and fit.resume.logs:
                # Every batch of the epoch was done before the interruption
                # (a checkpoint an older version or a driver wrote): the
                # epoch's training metrics are the restored ones.
                merged = {**fit.resume.logs, **logs}
                logs.clear()
                logs.update(merged)
            self._finish_resume()
        # A save due after the epoch's last batch. No preemption stop here:
        # callbacks listed before this one already ran their epoch end.
        self._settle(preempt=False)
        # The logs themselves, not a copy: callbacks listed after this one
        # still add to them (ReduceLROnPlateau's learning_rate).
        fit.epoch_logs = (epoch, logs if logs is not None else {})
        fit.progress.epoch = epoch + 1
        fit.progress.batch = 0
        if self.policy.epoch_end() or fit.save_at_epoch_end:
            fit.pending_save = (epoch + 1, 0, False, self._iterations())
        fit.save_at_epoch_end = False
        fit.unsettled = True

    def on_train_end(self, logs=None):
        fit = self._fit
        try:
            if self._preempt_requested(agree=True):
                self._mark_end_of_training()
                fit.pending_save = None
                self._settle(preempt=True)  # saves the end state and raises
            if self.delete_checkpoint:
                fit.pending_save = None  # it would be deleted right away
            self._settle(preempt=False)
            self._wait_for_saver()
            if self.delete_checkpoint and fit.store is not None:
                fit.store.delete()
            if self._preempt_requested(agree=True):
                # The signal came during the final save or the clean-up:
                # keep a checkpoint of the end state, then stop as preempted.
                self._mark_end_of_training()
                self._preempt()
        finally:
            self._end_fit()

    def abort(self, error=None):
        """Ends a fit() that raised `error`.

        A driver calls it when its fit() raises; for a plain model.fit()
        (which calls no hook then) it runs when the callback or its
        backup_dir is used again. Publishes the save that was due if no
        training step ran since it fell due (e.g. a callback listed after
        this one raised in its on_epoch_end), unless `error` is an
        interruption (a second preemption signal, Ctrl-C), which cancels the
        write in flight. Then waits for the saver and releases backup_dir.
        """
        fit = self._fit
        if fit is None:
            return
        try:
            if isinstance(error, (KeyboardInterrupt, PreemptionAbort)):
                fit.saver.cancel()
            elif not isinstance(error, (PreemptedError, BackupWriteError)) \
                    and fit.cluster.world == 1:
                # (With several workers the save would wait for the others,
                # which may have stopped: the last published one stays.)
                self._flush_pending()
            fit.saver.wait_until_finished()
        finally:
            self._end_fit()

    # ------------------------------------------------------------ restore

    def _restore(self):
        fit, model = self._fit, self.model
        fit_info = self._driver.fingerprint if self._driver is not None else None
        if fit_info is None and self.params:
            fit_info = {"steps per epoch": self.params.get("steps")}
        # Another number of workers or replicas reduces in another order.
        fit_info = dict(fit_info or {}, workers=fit.cluster.world,
                        replicas=replicas.replica_count(model))
        unbuilt = training_state.unbuilt_layers(model)
        if unbuilt:
            how = ("call it on a batch of data first, or train with "
                   "kerasbackup.fit(), which builds it from the first batch"
                   if self._driver is None else
                   "fit() could not build it from the first batch (its call() "
                   "does not reach them, or it has none, as a GAN whose "
                   "train_step() calls its parts). Build them first: give their "
                   "first layer an input shape, call them on a batch, or call "
                   "their build(input_shape)")
            raise UnbuiltStateError(
                "To back up and restore training exactly, the model must be "
                f"built before fit() starts. Model {model.name} has layers that "
                f"are not built yet ({', '.join(unbuilt)}): their variables would "
                "be created inside the first train step, after the restore. "
                f"To fix this, {how}.")
        training_state.ensure_optimizer_built(model)
        current = training_state.fingerprint(model, fit_info)
        fit.progress = training_state.TrainingState(epoch=0, fingerprint=current)
        plans = {}

        def accept(arrays, meta, info):
            try:
                plans[info["path"]] = training_state.check_restore(
                    model, meta, arrays, current, self.allow_changes,
                    backup_dir=self.backup_dir, rank=fit.cluster.rank,
                    world=fit.cluster.world, callbacks=fit.callbacks)
            except training_state.InvalidCheckpointContent as e:
                return [{"file": f, "kind": "invalid content", "detail": d}
                        for f, d in e.problems]
            return None

        # The chief picks the checkpoint; every other worker reads that one.
        loaded = distributed.load_agreed(
            fit.cluster, lambda: fit.store.load(accept=accept),
            lambda seq: load_published(self.backup_dir, seq, accept=accept,
                                       storage_options=self.storage_options),
            self.backup_dir)
        if loaded is None:
            return
        _, _, info = loaded
        plan = plans[info["path"]]
        error = None
        try:
            plan.apply()
        except Exception as e:
            error = e
        fit.cluster.raise_together(error, "restoring the checkpoint")
        if plan.inexact:
            self._warn_once("inexact", "The resume is not exact: this process "
                            "cannot restore " + "; ".join(plan.inexact) + ".")
        restored = plan.state
        fit.plan = plan
        fit.progress = dataclasses.replace(
            restored, fingerprint=current,
            history={k: list(v) for k, v in restored.history.items()},
            history_epochs=list(restored.history_epochs))
        fit.pending_callbacks = True
        self.policy.start(restored.batch, restored.batches_since_save)
        self.restored_state = restored
        self.restored_info = info
        if self._driver is None:
            # Plain model.fit(): it starts at the epoch; the batches already
            # done in it are skipped when it begins (on_epoch_begin).
            model._initial_epoch = restored.epoch

    def _resume_inside_epoch(self, plan):
        """model.fit() resumes inside an epoch: skip its done batches, in its order.

        The generators go back to the epoch's begin, so that the data
        iterator model.fit() makes after this hook draws the interrupted
        epoch's shuffle order; the done batches are drawn from it and
        skipped (_SkipDoneBatches); then the checkpoint's generators and
        metric accumulators are put back, before the next batch trains.
        """
        fit = self._fit
        batch = plan.state.batch
        fit.epoch_rng = plan.epoch_rng  # the epoch's begin, for the saves to come
        epoch_iterator = calling_epoch_iterator()
        if epoch_iterator is None:
            self._restore_metrics(plan)
            self._warn_once(
                "inexact-input",
                f"Resumed inside epoch {plan.state.epoch + 1}, but the data "
                "iterator of this fit() cannot be found: its "
                f"{batch} finished batches run again. Call model.fit() "
                "directly (Keras 3's fit loop) for an exact resume.",
                InexactResumeWarning)
            return
        problem = inexact_input(epoch_iterator, plan.state)
        if problem is None and plan.epoch_rng is None \
                and keras.backend.backend() != "tensorflow":
            # (TensorFlow's shuffle order comes from its global seed alone.)
            problem = ("the checkpoint does not hold the generators of the "
                       "epoch's begin (it was written by an older version), so "
                       "the epoch's shuffle order cannot be drawn again",
                       "resume from a checkpoint this version wrote")
        if problem is not None:
            what, fix = problem
            self._warn_once(
                "inexact-input",
                f"Resumed inside epoch {plan.state.epoch + 1} after batch {batch}, "
                f"but not in the interrupted run's data order: {what}. Its "
                f"{batch} finished batches were drawn from the input again and "
                f"skipped, in the order it gives now. For an exact resume, {fix}.",
                InexactResumeWarning)
        plan.restore_epoch_start_generators()
        fit.resume = _SkipDoneBatches(self, epoch_iterator, plan)

    def _finish_resume(self):
        """After the skipped batches: the checkpoint's generators, as at its save."""
        resume, self._fit.resume = self._fit.resume, None
        resume.finish()

    def _restore_metrics(self, plan):
        with distributed.scope(self.model):
            applied = plan.apply_metrics()
        if not applied:
            self._warn_once(
                "metrics",
                "The metric accumulators of the interrupted epoch could not be "
                "restored; this epoch's logged metrics cover only the resumed "
                "batches.")

    def _apply_pending(self):
        """Restores what must wait until every callback's on_train_begin ran."""
        fit = self._fit
        if fit.pending_callbacks:
            fit.pending_callbacks = False
            entries = fit.progress.callbacks
            arrays = fit.plan.arrays
            if entries and fit.callbacks is None:
                self._warn_once(
                    "siblings",
                    "The state of the other callbacks could not be restored: "
                    "the list of callbacks of this fit() is unknown.",
                )
            elif entries:
                unmatched = training_state.restore_callbacks(fit.callbacks, arrays,
                                                             entries)
                if unmatched:
                    self._warn_once(
                        "unmatched",
                        "No matching callback for the saved state of: "
                        + ", ".join(unmatched),
                    )
            history = getattr(self.model, "history", None)
            if isinstance(history, keras.callbacks.History):
                history.epoch = list(fit.progress.history_epochs)
                history.history = {k: list(v) for k, v in fit.progress.history.items()}

    # ------------------------------------------------------------ save

    def _settle(self, preempt=True, agree=False):
        """Runs what was left for the next hook: restores, history, saves.

        `agree`: the workers compare preemption flags here (see
        distributed.StopAgreement), as at every epoch begin: batch counts
        cannot see the time an epoch end takes (validation, saves).
        """
        fit = self._fit
        fit.unsettled = False
        if fit.pending_callbacks:
            self._apply_pending()
        if fit.epoch_logs is not None:
            epoch, logs = fit.epoch_logs
            fit.epoch_logs = None
            fit.progress.history_epochs.append(epoch)
            for key, value in training_state.log_values(logs).items():
                fit.progress.history.setdefault(key, []).append(value)
        self._check_saver()
        if fit.pending_save is not None:
            epoch, batch, include_metrics, _ = fit.pending_save
            fit.pending_save = None
            self._save(epoch, batch, include_metrics)
        if preempt and self._preempt_requested(agree=agree):
            self._preempt()

    def _save(self, epoch, batch, include_metrics):
        fit = self._fit
        saver = fit.saver
        saver.wait_until_finished()  # frees the host buffers for reuse
        self._check_saver()
        epoch_rng = fit.epoch_rng if self._driver is None and batch > 0 else None
        progress = dataclasses.replace(
            fit.progress, epoch=epoch, batch=batch,
            batches_since_save=self.policy.batches_since_save,
            shuffle_seed=(self._driver.shuffle_seed if self._driver is not None
                          else None))
        captured = training_state.capture(
            self.model, progress, include_metrics, callbacks=fit.callbacks,
            into=saver.host_buffers, cluster=fit.cluster, epoch_rng=epoch_rng)
        store = fit.store
        if store is None:
            return  # not the chief: it took part in the capture, the chief writes

        def write(cancel):
            return store.save(captured.host_arrays(), captured.meta, epoch=epoch,
                              batch=batch,
                              cancel=cancel if saver.asynchronous else None,
                              checksums=captured.checksums)

        try:
            saver.submit(write)
        except BackupWriteError as e:
            self._save_failed(e)

    def _wait_for_saver(self):
        self._fit.saver.wait_until_finished()
        self._check_saver()

    def _check_saver(self):
        try:
            self._fit.saver.check_for_errors()
        except BackupWriteError as e:
            self._save_failed(e)

    def _save_failed(self, error):
        if self.on_save_error != "warn":
            raise error
        errors.warn(f"{error} Training goes on; the previous checkpoint is kept.",
                      SaveErrorWarning, stacklevel=4)

    def _flush_pending(self):
        """Publishes the save that was due when fit() raised, if nothing trained since."""
        fit = self._fit
        if fit.pending_save is None or fit.progress is None:
            return
        if fit.pending_save[3] != self._iterations():
            return  # a training step ran since: that state is gone
        try:
            self._settle(preempt=False)
            self._wait_for_saver()
        except Exception as e:  # the original error matters more
            errors.warn(f"The checkpoint due when fit() failed could not be "
                          f"saved: {e}", SaveErrorWarning, stacklevel=3)

    def _iterations(self):
        opt = getattr(self.model, "optimizer", None)
        return None if opt is None else int(opt.iterations.numpy())

    # ------------------------------------------------------------ preemption

    def _preempt_requested(self, agree=False):
        """Whether to stop for preemption: the workers' agreed answer.

        `agree=True` agrees at once (every worker calls it at the same hook).
        """
        fit = self._fit
        if fit.watcher is None:
            return False
        if agree:
            return fit.stop.now(fit.watcher.requested)
        return fit.stop.requested(fit.watcher.requested)

    def _mark_end_of_training(self):
        # A signal after the last batch: keep a checkpoint of the end state
        # (marked as the last epoch, even after an early stop) so that the
        # rerun returns at once.
        progress = self._fit.progress
        epochs = (self.params or {}).get("epochs")
        if epochs is not None and progress.epoch < epochs and progress.batch == 0:
            progress.epoch = epochs

    def _preempt(self):
        fit = self._fit
        watcher, cluster = fit.watcher, fit.cluster
        # A signal that lands during a save only sets a flag, so the save
        # completes; a second one aborts (see preemption.py).
        self._wait_for_saver()
        current = (fit.progress.epoch, fit.progress.batch)
        # The chief says whether the position is saved yet; every worker
        # then takes part in the save, and none stops before it is published.
        error, needed = None, False
        if cluster.is_chief:
            try:
                if not fit.store.is_open:
                    fit.store.open()  # the clean-up had already closed it
                last = fit.store.latest
                needed = last is None or (last.get("epoch"), last.get("batch")) != current
            except Exception as e:
                error = e
        needed = cluster.broadcast(needed)
        cluster.raise_together(error, "preparing the preemption checkpoint")
        try:
            if needed:
                self._save(*current, include_metrics=current[1] > 0)
                self._wait_for_saver()
        except Exception as e:
            error = e
        cluster.raise_together(error, "publishing the preemption checkpoint")
        seconds = time.monotonic() - (watcher.requested_at or fit.stop.agreed_at)
        name = watcher.requested_name or "a signal to another worker"
        who = f" (rank {cluster.rank})" if cluster.world > 1 else ""
        print(
            f"kerasbackup{who}: {name} received; checkpoint published in "
            f"'{self.backup_dir}' at epoch {current[0] + 1}, batch {current[1]} "
            f"({seconds:.2f} s after the signal).",
            file=sys.stderr,
            flush=True,
        )
        self._end_fit()
        raise PreemptedError(self.backup_dir, name, current[0], current[1], seconds)

    # ------------------------------------------------------------ teardown

    def _refuse_or_release_own(self):
        """A fit() is starting with this callback: refuse if it is in a running one.

        If its previous fit() was a model.fit() that raised, that one is
        ended first (reusing the callback, as Keras' example does).
        """
        if self._fit is None:
            return
        if self.is_running():
            holder = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": self._fit.started}
            raise BackupLockedError(
                f"backup_dir '{self.backup_dir}' is in use by a fit() still "
                f"running with this same callback: pid {holder['pid']} on host "
                f"{holder['host']}, started {holder['started']}. fit() calls "
                "cannot be nested on one backup_dir.",
                self.backup_dir, holder)
        self.abort()

    def _release_stale_holder(self):
        """Ends another callback's hold on the same directory if its fit died.

        model.fit() calls no hook after an exception, so its callback keeps
        the lock; the next fit() on the directory (how an interrupted fit is
        resumed in the same session) releases it quietly: the error was
        already reported. A hold from a fit that still runs stays, and the
        store refuses this one with BackupLockedError.
        """
        release_dead_fit(self.backup_dir, keep=self)

    def _end_fit(self):
        fit, self._fit = self._fit, None
        if fit is None:
            return
        try:
            if fit.resume is not None:
                fit.resume.uninstall()
            if fit.saver is not None:
                fit.saver.close()
        finally:
            if fit.watcher is not None:
                fit.watcher.restore()
            if fit.store is not None:
                fit.store.close()
            if self._driver is None and getattr(self, "_model", None) is not None:
                # The restored epoch belongs to this fit() only.
                self.model._initial_epoch = None
            errors.flush_warnings()

    def _warn_once(self, key, message, category=ResumeWarning):
        fit = self._fit
        if key not in fit.warned:
            fit.warned.add(key)
            errors.warn(message, category, stacklevel=3)


class _SkipDoneBatches:
    """Makes model.fit()'s resumed epoch skip the batches the checkpoint had done.

    Keras' fit() can start at an epoch, not at a batch. The epoch's
    EpochIterator makes its steps with `_enumerate_iterator()`, called when
    the epoch's loop begins (after on_epoch_begin); an instance attribute
    stands in for it for that one epoch: it draws the done batches from the
    data iterator and yields only the steps after them, so that nothing
    trains on them and no callback sees them. The first batch drawn builds
    the metrics if fit() has not (on TensorFlow it builds them at its first
    step), and once the done batches are drawn their saved accumulators are
    assigned. `finish()` (at the callback's next hook) puts back the
    checkpoint's generators.
    """

    def __init__(self, owner, epoch_iterator, plan):
        self.owner = owner
        self.plan = plan  # until its metrics are assigned
        self.checkpoint = plan
        self.epoch_iterator = epoch_iterator
        self.remaining = int(plan.state.batch)
        self.logs = None  # the restored training metrics, once assigned
        original = epoch_iterator._enumerate_iterator

        def enumerate_iterator():
            self.uninstall()
            return self._steps(original())

        self._installed = enumerate_iterator
        epoch_iterator._enumerate_iterator = enumerate_iterator

    def uninstall(self):
        if vars(self.epoch_iterator).get("_enumerate_iterator") is self._installed:
            del self.epoch_iterator._enumerate_iterator

    def _steps(self, steps):
        spe = max(int(getattr(self.epoch_iterator, "steps_per_execution", 1) or 1), 1)
        first = None
        for step in steps:
            if self.remaining <= 0:
                self._restore_metrics(first)
                yield step
                continue
            data = step[2]
            for _ in range(min(spe, self.remaining)):
                try:
                    batch = _next_batch(data)
                except StopIteration:
                    self.remaining = 0
                    break
                if first is None:
                    first = batch
                self.remaining -= 1
        self._restore_metrics(first)

    def _restore_metrics(self, first):
        plan, self.plan = self.plan, None
        if plan is None:
            return
        model = self.owner.model
        if first is not None:
            try:
                model._symbolic_build(data_batch=first)
            except RuntimeError as e:  # a model that builds in its first step only
                if "Unable to automatically build the model" not in str(e):
                    raise
        self.owner._restore_metrics(plan)
        self.logs = dict(model.get_metrics_result())

    def finish(self):
        self.uninstall()
        self._restore_metrics(None)  # if the epoch's loop never began
        self.checkpoint.restore_generators()


def inexact_input(epoch_iterator, state):
    """Why model.fit()'s input cannot be drawn again in the checkpoint's order.

    `epoch_iterator`: the fit's EpochIterator; `state`: the checkpoint's
    TrainingState. Returns None when it can (in-memory arrays, unshuffled
    or shuffled from generators the checkpoint holds), else `(what, fix)`:
    the reason and what would make the resume exact, in words.
    """
    adapter = getattr(epoch_iterator, "data_adapter", None)
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    if not isinstance(adapter, ArrayDataAdapter):
        name = type(adapter).__name__
        source = _INPUT_NAMES.get(name, f"a {name} input")
        return (f"the input is {source}, which cannot be rewound to the "
                "interrupted epoch's order",
                "pass in-memory arrays (numpy arrays or tensors) to model.fit()")
    steps = getattr(epoch_iterator, "steps_per_epoch", None)
    if steps is not None and (steps != adapter.num_batches
                              or keras.backend.backend() == "torch"):
        return (f"with steps_per_epoch={steps} model.fit() carries its data "
                "iterator on from one epoch to the next",
                "leave steps_per_epoch unset (None)")
    if not getattr(adapter, "_shuffle", False) or keras.backend.backend() != "tensorflow":
        return None  # the order is drawn from generators the checkpoint holds
    seed = training_state.tf_global_seed()
    if seed is None:
        return ("on TensorFlow model.fit() shuffles arrays from TensorFlow's "
                "global seed, and none is set",
                "set a global seed with keras.utils.set_random_seed() (the "
                "same one in every run of the script)")
    if state.tf_global_seed is not None and seed != state.tf_global_seed:
        return (f"on TensorFlow model.fit() shuffles arrays from TensorFlow's "
                f"global seed, which is {seed} here and was "
                f"{state.tf_global_seed} in the interrupted run",
                f"set the same global seed with "
                f"keras.utils.set_random_seed({state.tf_global_seed})")
    return None


_INPUT_NAMES = {
    "TFDatasetAdapter": "a tf.data.Dataset",
    "GeneratorDataAdapter": "a Python generator",
    "PyDatasetAdapter": "a keras.utils.PyDataset",
    "TorchDataLoaderAdapter": "a torch DataLoader",
    "GrainDatasetAdapter": "a Grain dataset",
}


def _next_batch(iterator):
    if hasattr(iterator, "get_next_as_optional"):  # a tf.data iterator
        optional = iterator.get_next_as_optional()
        if not optional.has_value():
            raise StopIteration
        return optional.get_value()
    return next(iterator)


def _on_stack(obj, frame):
    """Whether a frame from `frame` outwards holds `obj` in a local variable."""
    while frame is not None:
        if any(value is obj for value in frame.f_locals.values()):
            return True
        frame = frame.f_back
    return False


def calling_epoch_iterator(frame=None):
    """The EpochIterator of the model.fit() calling a callback hook, or None.

    Keras gives callbacks no handle on it: it is the `epoch_iterator` local
    of Keras' fit() a few frames up (Keras 3's fit loops, all backends).
    """
    from keras.src.trainers.epoch_iterator import EpochIterator

    frame = frame if frame is not None else sys._getframe(1)
    for _ in range(12):
        if frame is None:
            break
        value = frame.f_locals.get("epoch_iterator")
        if isinstance(value, EpochIterator):
            return value
        frame = frame.f_back
    return None


def _calling_callback_list():
    """The CallbackList of a plain model.fit() that is calling us, or None.

    Keras gives callbacks no handle on their list; it is the `self` of the
    CallbackList method a few frames up.
    """
    frame = sys._getframe(1)
    for _ in range(8):
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.callbacks.CallbackList):
            return owner
        frame = frame.f_back
    return None
