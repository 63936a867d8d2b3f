"""The BackupAndRestore callback: crash-safe, exactly resumable training."""

import json
import os
import sys
import threading
import time
import warnings
import weakref

import numpy as np

import keras

from kerasbackup import state
from kerasbackup.errors import FingerprintMismatchError, PreemptedError, ResumeWarning
from kerasbackup.store import BackupWriteError, CheckpointStore, SaveCancelled

_SAVE_ERROR_MODES = ("stop", "warn")


def _check_args(backup_dir, save_freq, double_checkpoint, delete_checkpoint,
                save_before_preemption, preemption_signals, async_save,
                on_save_error, allow_changes):
    if not isinstance(backup_dir, (str, os.PathLike)) or not str(backup_dir):
        raise ValueError(
            "Invalid value for argument `backup_dir`. Expected a non-empty "
            f"path. Received: backup_dir={backup_dir!r}"
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


class ResumePoint:
    """Where a restored run starts, read by the training driver."""

    def __init__(self, epoch, batch, meta, arrays):
        self.epoch = epoch
        self.batch = batch
        self.shuffle_seed = meta.get("shuffle_seed")
        self.history = meta.get("history", {})
        self.history_epochs = meta.get("history_epochs", [])
        self.metric_index = meta["variables"] if batch > 0 else None
        self.arrays = arrays if batch > 0 else None


class BackupAndRestore(keras.callbacks.Callback):
    """Backs up the whole training state so an interrupted fit resumes exactly.

    Each save writes a complete checkpoint (model and optimizer variables,
    random generators, epoch and batch, history, the state of the other
    callbacks) into a staging directory, fsyncs it and publishes it with one
    atomic rename, so a kill at any instant leaves a checkpoint that verifies.
    At train begin the newest checkpoint that verifies is restored. Used with
    `kerasbackup.fit()` the run continues at the exact next batch with the same
    data order; with a plain `model.fit()` it continues at the saved epoch.

    Args:
        backup_dir: path of the directory for the checkpoints. It must be
            empty, missing, or a directory this callback wrote; it cannot be
            shared with another run or another callback.
        save_freq: `"epoch"` to save at the end of each epoch, a positive
            integer to save every `save_freq` batches, or `False` to save only
            when a preemption signal arrives (needs `save_before_preemption`).
        double_checkpoint: keep the previous checkpoint too, as a fallback if
            the newest one fails verification.
        delete_checkpoint: delete the checkpoints once training completes.
        save_before_preemption: on one of `preemption_signals`, finish the
            current batch, save, and stop with `PreemptedError`.
        preemption_signals: signal names handled when
            `save_before_preemption=True`.
        async_save: write checkpoints in a background thread (the default);
            training only waits for the copy to host memory. One save is in
            flight at a time: a save that falls due meanwhile waits for it,
            and fit() waits for the last one. A failed background save
            raises at the next batch.
        on_save_error: `"stop"` raises when a save fails; `"warn"` warns and
            trains on. The previous checkpoint is kept either way.
        allow_changes: `True`, or a list of fingerprint items (e.g.
            `["optimizer"]`) that may differ from the checkpoint's.

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
        preemption_signals=("SIGTERM", "SIGUSR1"),
        async_save=True,
        on_save_error="stop",
        allow_changes=False,
    ):
        super().__init__()
        if isinstance(allow_changes, str):
            allow_changes = [allow_changes]
        if isinstance(preemption_signals, str):
            preemption_signals = [preemption_signals]
        _check_args(backup_dir, save_freq, double_checkpoint, delete_checkpoint,
                    save_before_preemption, preemption_signals, async_save,
                    on_save_error, allow_changes)
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq if save_freq in ("epoch", False) else int(save_freq)
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self.save_before_preemption = bool(save_before_preemption)
        self.preemption_signals = tuple(preemption_signals)
        self.async_save = bool(async_save)
        self.on_save_error = on_save_error
        self.allow_changes = allow_changes
        self.resume_point = None
        self.restored_info = None
        self._store = None
        self._watcher = None
        self._driver_info = None  # set by kerasbackup.fit()
        self._reset_run()

    # ------------------------------------------------------------ run state

    def _reset_run(self):
        self._epoch = 0
        self._batches_in_epoch = 0
        self._batches_since_save = 0
        self._history = {}
        self._history_epochs = []
        self._fingerprint = None
        self._siblings = None
        self._pending_callbacks = None
        self._pending_history = False
        self._warned = set()
        self._saver = None
        self._cancel = threading.Event()
        self._buffers = {}  # host copies reused by asynchronous saves
        self._save_error = None
        self._pending_save = None
        self._epoch_logs = None
        self._unsettled = False
        self.saves = 0

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, ResumeWarning, stacklevel=3)

    # ------------------------------------------------------------ hooks

    def on_train_begin(self, logs=None):
        self._close()
        _release_stale_holder(self)
        self._reset_run()
        self.resume_point = None
        self.restored_info = None
        self._siblings = (self._driver_info or {}).get("callbacks") or _calling_callbacks()
        self._store = CheckpointStore(self.backup_dir, keep=2 if self.double_checkpoint else 1)
        self._store.open()
        self._owner_thread = threading.get_ident()
        _HOLDERS[os.path.realpath(self.backup_dir)] = self
        try:
            self._restore()
        except BaseException:
            self._close()
            raise
        if self.save_before_preemption:
            from kerasbackup.preemption import PreemptionWatcher

            self._watcher = PreemptionWatcher(self.preemption_signals)
            self._watcher.install()

    # Saves and preemption stops are taken at the NEXT hook, once every
    # other callback has finished the batch or epoch: their state and the
    # logs they add (e.g. ReduceLROnPlateau's learning_rate) are then final.

    def on_epoch_begin(self, epoch, logs=None):
        self._settle()
        if epoch != self._epoch:
            self._batches_in_epoch = 0
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._unsettled:
            self._settle()

    def on_train_batch_end(self, batch, logs=None):
        self._batches_in_epoch = batch + 1
        if type(self.save_freq) is int:
            self._batches_since_save += 1
            if self._batches_since_save >= self.save_freq:
                self._batches_since_save = 0
                self._pending_save = (self._epoch, batch + 1, True)
                self._unsettled = True
        if self._save_error is not None or (
            self._watcher is not None and self._watcher.requested
        ):
            self._unsettled = True

    def on_test_begin(self, logs=None):
        # fit()'s validation is about to reset the metrics: a save due after
        # the epoch's last batch must capture them first.
        if self._unsettled:
            self._settle()

    def on_epoch_end(self, epoch, logs=None):
        # A save due after the epoch's last batch. No preemption stop here:
        # callbacks listed before this one already ran their epoch end.
        self._settle(preempt=False)
        self._epoch_logs = (epoch, logs if logs is not None else {})
        self._epoch = epoch + 1
        self._batches_in_epoch = 0
        if self.save_freq == "epoch":
            self._pending_save = (epoch + 1, 0, False)
        self._unsettled = True

    def on_train_end(self, logs=None):
        try:
            preempted = self._watcher is not None and self._watcher.requested
            if preempted:
                # A signal after the last batch: keep a checkpoint of the
                # end state (marked as the last epoch, even after an early
                # stop) so that the rerun returns at once.
                epochs = (self.params or {}).get("epochs")
                if epochs is not None and self._epoch < epochs and \
                        self._batches_in_epoch == 0:
                    self._epoch = epochs
                self._pending_save = None
            elif self.delete_checkpoint:
                self._pending_save = None  # about to be deleted anyway
            self._settle(preempt=preempted)
            self._wait_for_save()
            if self._save_error is not None:
                self._raise_save_error()
            if self.delete_checkpoint and self._store is not None:
                self._store.delete()
        finally:
            self._close()
            if getattr(self.model, "_initial_epoch", None) is not None:
                # The restored epoch belongs to this fit() only.
                self.model._initial_epoch = None

    def _settle(self, preempt=True):
        """Runs what was left for the next hook: restores, history, saves."""
        self._unsettled = False
        self._apply_pending()
        if self._epoch_logs is not None:
            epoch, logs = self._epoch_logs
            self._epoch_logs = None
            self._history_epochs.append(epoch)
            for key, value in logs.items():
                self._history.setdefault(key, []).append(_to_float(value))
        if self._save_error is not None:
            self._raise_save_error()
        if self._pending_save is not None:
            pending, self._pending_save = self._pending_save, None
            self._save(*pending)
        if preempt and self._watcher is not None and self._watcher.requested:
            self._preempt()

    def abort(self):
        """Ends a fit() that raised: waits for the save in flight, unlocks."""
        try:
            self._wait_for_save()
        finally:
            self._close()
            if getattr(self, "_model", None) is not None:
                self.model._initial_epoch = None

    # ------------------------------------------------------------ restore

    def _restore(self):
        model = self.model
        fit_info = (self._driver_info or {}).get("fingerprint")
        if fit_info is None and self.params:
            fit_info = {"steps per epoch": self.params.get("steps")}
        if not model.built:
            raise ValueError(
                "To use the BackupAndRestore callback with model.fit(), the "
                f"model must be built before fit() starts. Model {model.name} is "
                "unbuilt: call it on a batch of data first, or train with "
                "kerasbackup.fit(), which builds it from the first batch."
            )
        state.ensure_optimizer_built(model)
        self._fingerprint = state.fingerprint(model, fit_info)
        loaded = self._store.load()
        if loaded is None:
            return
        arrays, meta, info = loaded
        diffs = state.compare_fingerprints(
            meta.get("fingerprint", {}), self._fingerprint, self.allow_changes
        )
        if diffs:
            raise FingerprintMismatchError(self.backup_dir, diffs)
        epoch, batch = int(meta["epoch"]), int(meta["batch"])
        groups = ["model", "optimizer"]
        problems = state.check_variables(model, arrays, meta["variables"], groups)
        if problems:
            raise FingerprintMismatchError(self.backup_dir, problems)
        state.assign_variables(model, arrays, meta["variables"], groups)
        state.restore_rng(arrays, meta.get("rng", {}))
        self._history = {k: list(v) for k, v in meta.get("history", {}).items()}
        self._history_epochs = list(meta.get("history_epochs", []))
        self._batches_since_save = int(meta.get("batches_since_save", 0))
        self._epoch, self._batches_in_epoch = epoch, batch
        self._pending_callbacks = (arrays, meta.get("callbacks", []))
        self._pending_history = True
        self.resume_point = ResumePoint(epoch, batch, meta, arrays)
        self.restored_info = info
        if self._driver_info is None:
            # Plain model.fit(): it can start at an epoch, nothing finer.
            model._initial_epoch = epoch
            lost = ["the data order (shuffle)"]
            if batch > 0:
                lost.append(
                    f"the position inside epoch {epoch + 1} (its {batch} "
                    "finished batches run again)"
                )
            self._warn_once(
                "plain-fit",
                "Restored weights, optimizer, random generators, history and "
                f"callback states from '{self.backup_dir}'. model.fit() cannot "
                f"restore {' or '.join(lost)}; train with kerasbackup.fit() "
                "(or the R fit()) for an exact resume.",
            )

    def _apply_pending(self):
        """Restores what must wait until every callback's on_train_begin ran."""
        if self._pending_callbacks is not None:
            arrays, entries = self._pending_callbacks
            self._pending_callbacks = None
            if entries and self._siblings is None:
                self._warn_once(
                    "siblings",
                    "The state of the other callbacks could not be restored: "
                    "the list of callbacks of this fit() is unknown.",
                )
            elif entries:
                unmatched = state.restore_callbacks(self._siblings, arrays, entries)
                if unmatched:
                    self._warn_once(
                        "unmatched",
                        "No matching callback for the saved state of: "
                        + ", ".join(unmatched),
                    )
        if self._pending_history:
            self._pending_history = False
            history = getattr(self.model, "history", None)
            if isinstance(history, keras.callbacks.History):
                history.epoch = list(self._history_epochs)
                history.history = {k: list(v) for k, v in self._history.items()}

    # ------------------------------------------------------------ save

    def _snapshot(self, epoch, batch, include_metrics):
        model = self.model
        # A background write needs its own copy: reuse the previous save's
        # buffers (the write that used them has finished, see _save()).
        into = self._buffers if self.async_save else None
        arrays, index = state.capture_variables(model, include_metrics, into=into)
        rng_arrays, rng_meta = state.capture_rng()
        arrays.update(rng_arrays)
        meta = {
            "epoch": epoch,
            "batch": batch,
            "variables": index,
            "rng": rng_meta,
            "history": self._history,
            "history_epochs": self._history_epochs,
            "batches_since_save": self._batches_since_save,
            "fingerprint": self._fingerprint,
            "keras_version": state.keras_version(),
        }
        if self._driver_info is not None:
            meta["shuffle_seed"] = self._driver_info.get("shuffle_seed")
        if self._siblings:
            cb_arrays, cb_meta = state.capture_callbacks(self._siblings)
            arrays.update(cb_arrays)
            meta["callbacks"] = cb_meta
        # Copy the JSON parts too: the background writer must not see later edits.
        return arrays, json.loads(json.dumps(meta))

    def _save(self, epoch, batch, include_metrics):
        self._wait_for_save()
        if self._save_error is not None:
            self._raise_save_error()
        arrays, meta = self._snapshot(epoch, batch, include_metrics)
        if self.async_save:
            self._cancel = threading.Event()
            self._saver = threading.Thread(
                target=self._persist, args=(arrays, meta, epoch, batch),
                name="kerasbackup-save", daemon=True,
            )
            self._saver.start()
        else:
            self._persist(arrays, meta, epoch, batch)
            if self._save_error is not None:
                self._raise_save_error()

    def _persist(self, arrays, meta, epoch, batch):
        try:
            self._store.save(arrays, meta, epoch=epoch, batch=batch,
                             cancel=self._cancel if self.async_save else None)
            self.saves += 1
        except SaveCancelled:
            pass
        except BackupWriteError as e:
            self._save_error = e
        except BaseException as e:  # surfaced on the training thread
            self._save_error = e

    def _wait_for_save(self):
        saver, self._saver = self._saver, None
        if saver is not None:
            try:
                # Short waits: a signal may be delivered to another thread,
                # and only the main thread's Python code runs its handler.
                while saver.is_alive():
                    saver.join(0.05)
            except BaseException:
                # Interrupted while waiting (a second preemption signal,
                # Ctrl-C): the background write must not publish after that.
                self._cancel.set()
                raise

    def _raise_save_error(self):
        err, self._save_error = self._save_error, None
        if isinstance(err, BackupWriteError) and self.on_save_error == "warn":
            warnings.warn(
                f"{err} Training goes on; the previous checkpoint is kept.",
                ResumeWarning,
                stacklevel=3,
            )
            return
        raise err

    # ------------------------------------------------------------ preemption

    def _preempt(self):
        watcher = self._watcher
        # A signal that lands during a save only sets a flag, so the save
        # completes; a second one aborts (see preemption.py).
        self._wait_for_save()
        last = self._store.latest if self._store is not None else None
        current = (self._epoch, self._batches_in_epoch)
        if last is None or (last.get("epoch"), last.get("batch")) != current:
            self._save(*current, include_metrics=self._batches_in_epoch > 0)
            self._wait_for_save()
            if self._save_error is not None:
                self._raise_save_error()
        seconds = time.monotonic() - watcher.requested_at
        name = watcher.requested_name
        print(
            f"kerasbackup: {name} received; checkpoint published in "
            f"'{self.backup_dir}' at epoch {current[0] + 1}, batch {current[1]} "
            f"({seconds:.2f} s after the signal).",
            file=sys.stderr,
            flush=True,
        )
        self._close()
        raise PreemptedError(self.backup_dir, name, current[0], current[1], seconds)

    # ------------------------------------------------------------ teardown

    def _close(self):
        self._buffers = {}  # the host copies of async saves can be large
        if self._watcher is not None:
            self._watcher.restore()
            self._watcher = None
        if self._store is not None:
            self._store.close()
            self._store = None


# backup_dir -> the callback holding it open in this process.
_HOLDERS = weakref.WeakValueDictionary()


def _release_stale_holder(cb):
    """Closes another callback's hold on the same directory if its fit died.

    A plain model.fit() that raises calls no hook, so its callback keeps the
    lock. If that callback was opened on this thread, its fit cannot still
    be running (fits do not nest), so it is released with a warning. A hold
    from another live thread stays, and the store refuses the new fit.
    """
    other = _HOLDERS.get(os.path.realpath(cb.backup_dir))
    if other is None or other is cb or other._store is None:
        return
    if other._owner_thread == threading.get_ident():
        warnings.warn(
            f"Releasing '{cb.backup_dir}', left locked by an earlier fit() "
            "in this process that ended with an error.",
            ResumeWarning,
            stacklevel=3,
        )
        other.abort()


def _to_float(value):
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return value


def _calling_callbacks():
    """Finds the callback list of a plain model.fit() that is calling us."""
    frame = sys._getframe(1)
    for _ in range(8):
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.callbacks.CallbackList):
            return list(owner.callbacks)
        frame = frame.f_back
    return None
