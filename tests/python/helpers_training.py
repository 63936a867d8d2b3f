"""Shared helpers for the exact-resume and preemption tests.

Everything here is small on purpose: a 6-feature regression problem, a
Dense/Dropout/Dense model trained with Adam on an ExponentialDecay schedule,
so that a training run costs well under a second after its first trace.
"""

import contextlib
import os
import random
import signal
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
INST_PYTHON = os.path.abspath(os.path.join(HERE, "..", "..", "inst", "python"))
TRAIN_SCRIPT = os.path.join(HERE, "train_script.py")
PYTHON = sys.executable

N_FEATURES = 6


class Interrupted(Exception):
    """Raised by `Interrupter` to simulate a crash at a chosen point."""


def make_data(n=80, seed=0):
    """x: (n, 6) float32; y = a linear function of x plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_FEATURES)).astype("float32")
    w = np.arange(1, N_FEATURES + 1, dtype="float32") / N_FEATURES
    y = (x @ w + 0.1 * rng.standard_normal(n).astype("float32")).reshape(n, 1)
    return x, y


def make_model(seed=1, dropout=True, schedule=True, build=True,
               learning_rate=0.01, optimizer=None):
    """Seeds every generator, then builds and compiles a small model."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = []
    if build:
        layers.append(keras.Input(shape=(N_FEATURES,)))
    layers.append(keras.layers.Dense(16, activation="relu"))
    if dropout:
        layers.append(keras.layers.Dropout(0.25))
    layers.append(keras.layers.Dense(1))
    model = keras.Sequential(layers)
    if optimizer is None:
        lr = learning_rate
        if schedule:
            lr = keras.optimizers.schedules.ExponentialDecay(
                learning_rate, decay_steps=5, decay_rate=0.9)
        optimizer = keras.optimizers.Adam(learning_rate=lr)
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return model


def make_callbacks(early_stopping_patience=None, reduce_lr=False,
                   interrupter=None, restore_best_weights=False):
    """The sibling callbacks, in a fixed order (their state is matched by position)."""
    import keras

    cbs = []
    if interrupter is not None:
        cbs.append(interrupter)
    if early_stopping_patience is not None:
        cbs.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=early_stopping_patience,
            min_delta=0.3, restore_best_weights=restore_best_weights))
    if reduce_lr:
        cbs.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", patience=1, factor=0.5, min_delta=0.35,
            cooldown=1, min_lr=1e-5))
    return cbs


def _interrupter_class():
    import keras

    class Interrupter(keras.callbacks.Callback):
        """Raises `Interrupted` before batch `b` of epoch `e` for each `(e, b)`.

        `b == "end"` raises at the end of epoch `e` (after every other
        callback ran, when listed last). Each point fires once, so the same
        object can stay in the callback list of the resumed run and keep the
        positions of the other callbacks unchanged.
        """

        def __init__(self, points):
            super().__init__()
            self.points = list(points)
            self.fired = []
            self._epoch = None

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def _fire(self, point):
            if point in self.points:
                self.points.remove(point)
                self.fired.append(point)
                raise Interrupted(f"interrupted at {point}")

        def on_train_batch_begin(self, batch, logs=None):
            self._fire((self._epoch, batch))

        def on_epoch_end(self, epoch, logs=None):
            self._fire((epoch, "end"))

    return Interrupter


def interrupter(points):
    return _interrupter_class()(points)


def callback_states(callbacks):
    """The training state of EarlyStopping / ReduceLROnPlateau callbacks."""
    import keras

    out = []
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.EarlyStopping):
            out.append(("EarlyStopping", cb.wait, float(cb.best), cb.best_epoch,
                        cb.stopped_epoch))
        elif isinstance(cb, keras.callbacks.ReduceLROnPlateau):
            out.append(("ReduceLROnPlateau", cb.wait, float(cb.best),
                        cb.cooldown_counter))
    return out


def snapshot(model, callbacks=(), history=None):
    """Everything that must match bit for bit between two runs."""
    history = history if history is not None else model.history
    lr = model.optimizer.learning_rate
    return {
        "variables": [np.array(v.numpy()) for v in model.variables],
        "variable_paths": [v.path.split("/", 1)[-1] for v in model.variables],
        "optimizer": [np.array(v.numpy()) for v in model.optimizer.variables],
        "learning_rate": np.array(lr.numpy() if hasattr(lr, "numpy") else lr),
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "epoch": list(history.epoch),
        "callbacks": callback_states(callbacks),
    }


def assert_same(actual, expected):
    """Exact equality of two `snapshot()`s, with a readable first difference."""
    assert len(actual["variables"]) == len(expected["variables"])
    for i, (a, e) in enumerate(zip(actual["variables"], expected["variables"])):
        assert a.dtype == e.dtype and np.array_equal(a, e), (
            f"model variable {i} ({expected['variable_paths'][i]}) differs: "
            f"max |diff| = {np.max(np.abs(a.astype('float64') - e.astype('float64')))}")
    assert len(actual["optimizer"]) == len(expected["optimizer"])
    for i, (a, e) in enumerate(zip(actual["optimizer"], expected["optimizer"])):
        assert np.array_equal(a, e), f"optimizer variable {i} differs"
    assert np.array_equal(actual["learning_rate"], expected["learning_rate"])
    assert actual["epoch"] == expected["epoch"], "History.epoch differs"
    assert sorted(actual["history"]) == sorted(expected["history"]), \
        "History keys differ"
    for key, values in expected["history"].items():
        assert actual["history"][key] == values, f"history[{key!r}] differs"
    assert actual["callbacks"] == expected["callbacks"], "callback states differ"


def snapshot_to_npz(snap, path):
    arrays = {}
    for i, a in enumerate(snap["variables"]):
        arrays[f"var_{i:03d}"] = a
    for i, a in enumerate(snap["optimizer"]):
        arrays[f"opt_{i:03d}"] = a
    arrays["learning_rate"] = snap["learning_rate"]
    arrays["epoch"] = np.array(snap["epoch"], dtype="int64")
    for k, v in snap["history"].items():
        arrays[f"history_{k}"] = np.array(v, dtype="float64")
    arrays["callbacks"] = np.array(repr(snap["callbacks"]))
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def npz_to_dict(path):
    with np.load(path) as z:
        return {k: np.array(z[k]) for k in z.files}


def assert_same_npz(a_path, b_path):
    a, b = npz_to_dict(a_path), npz_to_dict(b_path)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), f"{k} differs"


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = INST_PYTHON + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def latest_checkpoint(backup_dir):
    """(epoch, batch) of the newest published checkpoint, or None (no lock taken)."""
    from kerasbackup.store import backup_info

    try:
        found = backup_info(backup_dir, verify=False)
    except Exception:
        return None
    return (found[-1]["epoch"], found[-1]["batch"]) if found else None


def count_checkpoint_dirs(backup_dir):
    try:
        return sum(1 for n in os.listdir(backup_dir) if n.startswith("ckpt-"))
    except FileNotFoundError:
        return 0


def run_resumable(backup_dir, x, y, points=(), *, save_freq="epoch", epochs=5,
                  schedule=True, early_stopping=None, reduce_lr=False,
                  restore_best_weights=False, backup_first=False,
                  async_save=False, build=True, batch_size=8,
                  learning_rate=0.01, max_restarts=10, stopper=None,
                  catch=(Interrupted,), backup_args=None, on_stop=None):
    """Trains with `kerasbackup.fit()` until it completes.

    `points` are `(epoch, batch)` interruptions (see `Interrupter`); or
    `stopper` is a callback of that kind (e.g. a `Signaller`) and `catch`
    the exceptions it causes. After each one `on_stop(exception)` is called
    and the "script" runs again as a new process would: a freshly seeded and
    built model and fresh callbacks, only the backup directory carries over.
    Returns `(snapshot, restarts, warnings)`.
    """
    import warnings

    import kerasbackup

    if stopper is None:
        stopper = interrupter(points)
    restarts = 0
    caught = []
    while True:
        model = make_model(schedule=schedule, build=build,
                           learning_rate=learning_rate)
        siblings = make_callbacks(early_stopping, reduce_lr, stopper,
                                  restore_best_weights)
        backup = kerasbackup.BackupAndRestore(
            backup_dir, save_freq=save_freq, async_save=async_save,
            **(backup_args or {}))
        cbs = [backup] + siblings if backup_first else siblings + [backup]
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                kerasbackup.fit(model, x, y, batch_size=batch_size,
                                epochs=epochs, callbacks=cbs,
                                validation_split=0.2, shuffle=True, verbose=0)
            caught.extend(w)
            return snapshot(model, siblings), restarts, caught
        except catch as e:
            caught.extend(w)
            if on_stop is not None:
                on_stop(e)
            restarts += 1
            assert restarts <= max_restarts


def _signaller_class():
    import keras

    class Signaller(keras.callbacks.Callback):
        """Sends `sig` to this process at chosen points, each once.

        Points: `"train_begin"`, `(epoch, batch)` (before that batch),
        `(epoch, "end")`, `"train_end"`. `(epoch, "end")` and
        `"train_end"` happen in this callback's own hook, so before or after
        BackupAndRestore's depending on the order of the callback list.
        """

        def __init__(self, points, sig=signal.SIGTERM):
            super().__init__()
            self.points = list(points)
            self.sig = sig
            self.sent = []
            self.batches = 0
            self._epoch = None

        def _fire(self, point):
            if point in self.points:
                self.points.remove(point)
                self.sent.append(point)
                os.kill(os.getpid(), self.sig)

        def on_train_begin(self, logs=None):
            self._fire("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            self._fire((self._epoch, batch))

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            self._fire((epoch, "end"))

        def on_train_end(self, logs=None):
            self._fire("train_end")

    return Signaller


def signaller(points, sig=None):
    import signal as _signal

    return _signaller_class()(points, _signal.SIGTERM if sig is None else sig)


def raw_sigaction(sig):
    """What the kernel holds for `sig`: (handler address, mask, flags).

    Read with sigaction(2) into a raw `struct sigaction` (glibc x86_64 /
    aarch64 layout: handler at 0, the kernel's 8 mask bytes at 8, flags at
    136). Bytes glibc does not fill (the rest of the 128-byte mask) and the
    SA_RESTORER flag and pointer glibc adds on every write are left out.
    """
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    buf = ctypes.create_string_buffer(512)
    assert libc.sigaction(int(sig), None, buf) == 0
    raw = buf.raw
    sa_restorer = 0x04000000
    return (int.from_bytes(raw[0:8], "little"), raw[8:16].hex(),
            int.from_bytes(raw[136:140], "little") & ~sa_restorer)


def save_sigactions(sigs):
    """Python's and the kernel's handlers for `sigs`, for restore_sigactions()."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    saved = {}
    for sig in sigs:
        buf = ctypes.create_string_buffer(512)
        assert libc.sigaction(int(sig), None, buf) == 0
        saved[sig] = (signal.getsignal(sig), buf)
    return libc, saved


def restore_sigactions(state):
    libc, saved = state
    for sig, (python_handler, buf) in saved.items():
        signal.signal(sig, signal.SIG_DFL if python_handler is None else python_handler)
        libc.sigaction(int(sig), buf, None)


@contextlib.contextmanager
def phase_hook(hook):
    """Installs a store phase hook for the duration of a `with` block."""
    from kerasbackup.store import set_phase_hook

    previous = set_phase_hook(hook)
    try:
        yield hook
    finally:
        set_phase_hook(previous)


def seeded_rng(name):
    """A random.Random seeded from KB_TEST_SEED or the clock; prints the seed."""
    seed = int(os.environ.get("KB_TEST_SEED") or time.time_ns() % 2**32)
    print(f"{name}: random seed {seed} (set KB_TEST_SEED={seed} to replay)")
    return random.Random(seed)


def hold_until(path):
    """In a job: waits at this point until the test creates `path` (after acting)."""
    while not os.path.exists(path):
        time.sleep(0.01)


def wait_for(predicate, proc=None, timeout=420, what="a state"):
    """Polls `predicate` until true; fails if `proc` exits first or after `timeout` s.

    The bound only turns a hang into a failure: a job's start (Python, Keras,
    TensorFlow) took over 120 s on a 2-core machine with both cores busy.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"child exited early while waiting for {what}: "
                                 f"{proc.communicate()[1]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
