"""kerasbackup benchmark (issue 6): checkpoint cost against Keras' BackupAndRestore.

Run with the package's Python (`make bench`), or directly:

    python bench/bench.py            # full run, 8-10 minutes on 2 cores
    python bench/bench.py --quick    # smoke run: tiny models, 1 repeat

Prints a markdown report on stdout (targets first, then the figures, then the
save-path profile) and writes every raw timing to bench/results.json. Progress
goes to stderr. See bench/README.md for what each figure times.
"""

import argparse
import contextlib
import datetime
import inspect
import gc
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "inst", "python"))

import numpy as np  # noqa: E402

T_START = time.perf_counter()
MiB = 1 << 20

# (label, width, layers): dense layers width x width with bias, Adam.
FULL = {
    "sizes": [("1M", 512, 4), ("25M", 2048, 6), ("100M", 4096, 6)],
    "repeats": {"1M": 7, "25M": 5, "100M": 3},
    "profile": {"25M": 3, "100M": 1},
    "fit_model": ("25M", 2048, 6),
    "fit_epoch_seconds": 20.0,
    "fit_max_steps": 400,
    "fit_epochs": 2,
    "fit_repeats": 2,  # save_freq="epoch" configs and no callback
    "fit_repeats_batches": 1,  # every-10-batches configs (not a target)
    "fit_batch": 32,
    "batch_calls": 200_000,
    "crc_bytes": 256 * MiB,
    "small_fit": (4096, 32, 64, 5, 32, 5),  # samples, features, units, epochs, batch, repeats
    "preempt": (1024, 8, 3),  # width, layers (8.4M params, ~100 MB with Adam), repeats
}
QUICK = {
    "sizes": [("70k", 128, 4), ("1M", 512, 4)],
    "repeats": {"70k": 1, "1M": 1},
    "profile": {"1M": 1},
    "fit_model": ("0.3M", 256, 4),
    "fit_epoch_seconds": 0.5,
    "fit_max_steps": 20,
    "fit_epochs": 2,
    "fit_repeats": 1,
    "fit_repeats_batches": 1,
    "fit_batch": 32,
    "batch_calls": 20_000,
    "crc_bytes": 16 * MiB,
    "small_fit": (512, 8, 16, 2, 32, 1),
    "preempt": (256, 4, 1),
}


def log(msg):
    print(f"[{time.perf_counter() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


def median(xs):
    if isinstance(xs, (int, float)):
        return float(xs)
    return statistics.median(xs) if xs else float("nan")


def now():
    return time.perf_counter()


# ---------------------------------------------------------------- machine


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def machine_line(workdir):
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fs, dev, mnt = "?", "?", "/"
    try:
        real = os.path.realpath(workdir)
        with open("/proc/mounts") as f:
            for line in f:
                d, m, t = line.split()[:3]
                m = m.replace("\\040", " ")
                if (real == m or real.startswith(m.rstrip("/") + "/")) and len(m) >= len(mnt):
                    fs, dev, mnt = t, d, m
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f"{kb / 1024**2:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import keras
    import tensorflow as tf

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{cpu}, {os.cpu_count()} cores, {mem}; disk {dev} {fs} (mounted on {mnt}, "
            f"work dir {workdir}); {date}; Python {platform.python_version()}, "
            f"keras {keras.__version__}, TF {tf.__version__}, numpy {np.__version__}; "
            f"load average at start {loadavg()}")


# ---------------------------------------------------------------- helpers


def build_model(width, layers, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((width,))] + [
        keras.layers.Dense(width) for _ in range(layers)])
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    return model


def train_steps(model, width, steps=1, batch=8):
    x = np.random.default_rng(1).random((batch, width), dtype=np.float32)
    for _ in range(steps):
        model.train_on_batch(x, x)


def state_nbytes(model):
    vs = list(model.variables) + list(model.optimizer.variables)
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in vs)


def dir_bytes(path, top_level_dotfiles=False):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            if root == path and f.startswith(".") and not top_level_dotfiles:
                continue
            total += os.path.getsize(os.path.join(root, f))
    return total


def fsync_path(path, directory=False):
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settle():
    """Flushes dirty pages so one measurement does not pay for the previous one."""
    os.sync()
    gc.collect()


def raw_write(path, buf, chunk=16 * MiB, crc=False):
    """Writes `buf` sequentially to a new file, one fsync; returns seconds.

    With `crc`, the store's checksum thread hashes the chunks during the
    fsync, as `CheckpointStore._write_arrays` does.
    """
    from kerasbackup import store as kstore

    mv = memoryview(buf).cast("B")
    t = now()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for start in range(0, len(mv), chunk):
            piece = mv[start:start + chunk]
            done = 0
            while done < len(piece):
                done += os.write(fd, piece[done:])
        h = kstore._Crc32(threaded=True) if crc else None
        try:
            if h is not None:
                for start in range(0, len(mv), chunk):
                    h.feed(mv[start:start + chunk])
            os.fsync(fd)
        finally:
            if h is not None:
                h.result()
    finally:
        os.close(fd)
    dt = now() - t
    os.unlink(path)
    return dt


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------- (a)(c)(d)(e)


def measure_size(label, width, layers, repeats, workdir, prof_repeats):
    import keras
    from kerasbackup import BackupAndRestore, CheckpointStore
    from kerasbackup import state as kstate

    log(f"{label}: building {layers}x Dense({width}) + Adam")
    model = build_model(width, layers)
    train_steps(model, width, steps=2)
    res = {"label": label, "params": int(model.count_params()),
           "state_bytes": state_nbytes(model), "repeats": repeats}

    d_sync = os.path.join(workdir, f"{label}-ours-sync")
    d_async = os.path.join(workdir, f"{label}-ours-async")
    d_keras = os.path.join(workdir, f"{label}-keras")
    ours = BackupAndRestore(d_sync, async_save=False)
    ours_a = BackupAndRestore(d_async, async_save=True)  # the default
    kcb = keras.callbacks.BackupAndRestore(d_keras)
    for cb in (ours, ours_a, kcb):
        cb.set_model(model)
        cb.on_train_begin()
    # One untimed save each: the timed ones then replace an existing
    # checkpoint (prune / overwrite), as every save after the first does,
    # and the async callback's reused host buffers exist.
    ours._save(1, 0, include_metrics=False)
    ours_a._save(1, 0, include_metrics=False)
    ours_a._wait_for_save()
    kcb._save_model()
    res["bytes_ours"] = dir_bytes(d_sync)
    res["bytes_keras"] = os.path.getsize(kcb._weights_path) + \
        os.path.getsize(kcb._training_metadata_path)
    raw_buf = np.ones(res["bytes_ours"], dtype=np.uint8)
    raw_path = os.path.join(d_sync, "raw-bound.bin")

    t = {k: [] for k in ("sync", "async_stall", "async_total", "keras", "keras_fsync",
                         "raw")}
    log(f"{label}: save stalls x{repeats} ({res['bytes_ours'] / 1e6:.0f} MB)")
    for r in range(repeats):
        settle()
        t0 = now()
        ours._save(r + 2, 0, include_metrics=False)
        t["sync"].append(now() - t0)

        settle()
        t0 = now()
        ours_a._save(r + 2, 0, include_metrics=False)
        t["async_stall"].append(now() - t0)
        ours_a._wait_for_save()
        t["async_total"].append(now() - t0)
        if ours_a._save_error is not None:
            raise ours_a._save_error

        settle()
        t0 = now()
        kcb._save_model()
        t1 = now()
        fsync_path(kcb._weights_path)
        fsync_path(kcb._training_metadata_path)
        fsync_path(d_keras, directory=True)
        t["keras"].append(t1 - t0)
        t["keras_fsync"].append(now() - t0)

        settle()
        t["raw"].append(raw_write(raw_path, raw_buf))
    del raw_buf
    res["times"] = t

    # (e) restore: a fresh callback's on_train_begin on the built model.
    ours._close()  # keeps the checkpoint, releases the lock
    ours_a.on_train_end()  # deletes its checkpoint
    rt = {k: [] for k in ("ours_total", "ours_open", "ours_load", "ours_assign",
                          "keras_load_weights")}
    log(f"{label}: restores x{repeats}")
    groups = ["model", "optimizer"]
    for r in range(repeats):
        settle()
        cb = BackupAndRestore(d_sync, async_save=True)
        cb.set_model(model)
        with quiet():
            t0 = now()
            cb.on_train_begin()
            rt["ours_total"].append(now() - t0)
        assert cb.resume_point is not None, "restore found no checkpoint"
        model._initial_epoch = None
        cb._close()
        del cb

        # The same path in parts: lock/open, store load (read + verify),
        # check + assign.
        settle()
        t0 = now()
        store = CheckpointStore(d_sync).open()
        rt["ours_open"].append(now() - t0)
        t0 = now()
        arrays, meta, _ = store.load()
        rt["ours_load"].append(now() - t0)
        t0 = now()
        problems = kstate.check_variables(model, arrays, meta["variables"], groups)
        kstate.assign_variables(model, arrays, meta["variables"], groups)
        rt["ours_assign"].append(now() - t0)
        assert not problems, problems
        store.close()
        del arrays, meta

        settle()
        with quiet():
            t0 = now()
            model.load_weights(kcb._weights_path)
            rt["keras_load_weights"].append(now() - t0)
    res["restore"] = rt

    if prof_repeats:
        log(f"{label}: profiling the save path x{prof_repeats}")
        res["profile"] = profile_save(model, d_sync, prof_repeats, width)

    kcb.on_train_end()
    shutil.rmtree(d_sync, ignore_errors=True)
    shutil.rmtree(d_keras, ignore_errors=True)
    del model, ours, ours_a, kcb
    keras.backend.clear_session()
    gc.collect()
    return res


# ---------------------------------------------------------------- profiling


class PhaseTimer:
    """Self time (children excluded) of wrapped functions, main thread only."""

    def __init__(self):
        self.self_time = {}
        self.calls = {}
        self.missing = []
        self._stack = []  # [name, child seconds]

    def wrap(self, name, fn, label=None):
        timer = self

        def wrapper(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return fn(*args, **kwargs)
            key = label(timer._stack[-1][0] if timer._stack else None) if label else name
            timer._stack.append([key, 0.0])
            t0 = now()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = now() - t0
                _, child = timer._stack.pop()
                timer.self_time[key] = timer.self_time.get(key, 0.0) + dt - child
                timer.calls[key] = timer.calls.get(key, 0) + 1
                if timer._stack:
                    timer._stack[-1][1] += dt
        return wrapper


@contextlib.contextmanager
def patched(timer):
    from kerasbackup import callback as kcallback
    from kerasbackup import state as kstate
    from kerasbackup import store as kstore

    saved = []

    def patch(obj, attr, make):
        # The engine is being edited concurrently: skip what no longer exists.
        old = obj.__dict__.get(attr) if isinstance(obj, type) else getattr(obj, attr, None)
        if old is None:
            timer.missing.append(f"{getattr(obj, '__name__', obj)}.{attr}")
            return
        saved.append((obj, attr, old))
        setattr(obj, attr, make(old))

    S = kstore.CheckpointStore
    W = timer.wrap
    patch(kstate, "capture_variables", lambda f: W("capture_variables (views)", f))
    patch(kstate, "capture_rng", lambda f: W("capture_rng", f))
    patch(kstate, "capture_callbacks", lambda f: W("capture_callbacks", f))
    patch(kcallback.BackupAndRestore, "_snapshot", lambda f: W("snapshot glue", f))
    patch(json, "dumps", lambda f: W("json dumps/loads", f))
    patch(json, "loads", lambda f: W("json dumps/loads", f))
    patch(kstore, "_prepare_arrays", lambda f: W("prepare_arrays", f))
    patch(S, "_write_arrays", lambda f: staticmethod(
        W("write arrays.bin (loop glue)", f.__func__)) if isinstance(f, staticmethod)
        else W("write arrays.bin (loop glue)", f))
    patch(kstore, "_write_all", lambda f: W(
        "os.write", f, label=lambda parent: "os.write arrays.bin"
        if parent and "arrays" in parent else "os.write small files"))
    patch(kstore._Crc32, "result", lambda f: W("crc32 tail wait", f))
    patch(kstore, "_write_file", lambda f: W("state.json+manifest (open/close/crc)", f))
    patch(kstore, "_fsync_dir", lambda f: W("fsync dir", f))
    patch(os, "fsync", lambda f: W("fsync", f, label=lambda parent: {
        "write arrays.bin (loop glue)": "fsync arrays.bin",
        "state.json+manifest (open/close/crc)": "fsync state.json+manifest",
    }.get(parent, "fsync dir")))
    patch(os, "rename", lambda f: W("rename", f))
    patch(os, "mkdir", lambda f: W("mkdir staging", f))
    patch(S, "_prune", lambda f: W("prune (trash old, wait for last removal)", f))
    patch(S, "_wait_for_removal", lambda f: W("wait for previous removal", f))
    patch(shutil, "rmtree", lambda f: W("rmtree old checkpoint", f))
    patch(S, "_next_seq", lambda f: W("scan dir (next seq)", f))
    try:
        yield
    finally:
        for obj, attr, old in reversed(saved):
            setattr(obj, attr, old)


def profile_save(model, backup_dir, repeats, width):
    """Breaks one synchronous save into phases, plus diagnostics of the save path."""
    from kerasbackup import BackupAndRestore
    from kerasbackup import state as kstate
    from kerasbackup import store as kstore

    out = {}
    cb = BackupAndRestore(backup_dir, async_save=False)
    cb.set_model(model)
    with quiet():
        cb.on_train_begin()
    model._initial_epoch = None

    totals, phases = [], []
    for r in range(repeats):
        settle()
        timer = PhaseTimer()
        with patched(timer):
            t0 = now()
            cb._save(100 + r, 0, include_metrics=False)
            total = now() - t0
        totals.append(total)
        phases.append(dict(timer.self_time))
        out["not_instrumented"] = timer.missing
    out["total"] = totals
    out["phases"] = phases

    diag = {k: [] for k in (
        "capture_views", "capture_into", "json_roundtrip", "raw", "raw_crc_thread",
        "load_verify", "load_read_only", "assign_only", "async_stall", "step_idle",
        "step_busy")}
    # What the landed capture does: views for sync saves, copies into the
    # same buffers for async ones (checked, so the figures are of that code).
    views, _ = kstate.capture_variables(model, False)
    out["sync_capture_is_views"] = bool(all(
        not a.flags.owndata and not a.flags.writeable for a in views.values()))
    del views
    pool = {}
    first, _ = kstate.capture_variables(model, False, into=pool)
    again, _ = kstate.capture_variables(model, False, into=pool)
    out["async_capture_reuses_buffers"] = bool(all(
        again[k] is first[k] and again[k].flags.owndata for k in first))
    del first, again
    nbytes = dir_bytes(backup_dir)
    buf = np.ones(nbytes, dtype=np.uint8)
    raw_path = os.path.join(backup_dir, "raw-diag.bin")
    for r in range(max(repeats, 2)):
        gc.collect()
        t0 = now()
        a, _ = kstate.capture_variables(model, False)
        diag["capture_views"].append(now() - t0)
        del a
        t0 = now()
        kstate.capture_variables(model, False, into=pool)
        diag["capture_into"].append(now() - t0)
        arrays, meta = cb._snapshot(5, 0, False)
        del arrays
        t0 = now()
        json.loads(json.dumps(meta))
        diag["json_roundtrip"].append(now() - t0)

        settle()
        diag["raw"].append(raw_write(raw_path, buf))
        settle()
        diag["raw_crc_thread"].append(raw_write(raw_path, buf, crc=True))
    del buf, pool

    # The default async save: its stall, and the training step that runs
    # while its write is in flight, against a step with no save.
    cba = BackupAndRestore(backup_dir + "-async", async_save=True)
    cba.set_model(model)
    cba.on_train_begin()
    for r in range(-1, repeats):  # r = -1: untimed warm-up (allocates the buffers)
        settle()
        t0 = now()
        train_steps(model, width, steps=1)
        step_idle = now() - t0
        t0 = now()
        cba._save(300 + r, 0, include_metrics=False)
        stall = now() - t0
        t0 = now()
        train_steps(model, width, steps=1)
        step_busy = now() - t0
        cba._wait_for_save()
        if r >= 0:
            diag["async_stall"].append(stall)
            diag["step_idle"].append(step_idle)
            diag["step_busy"].append(step_busy)
    cba.on_train_end()

    # Restore in parts: verified read vs plain read, and assignment.
    cb._close()
    path = kstore._ckpt_dirs(backup_dir)[-1][1]
    for r in range(max(repeats, 2)):
        settle()
        t0 = now()
        info, problems, loaded = kstore._inspect(path, "load")
        diag["load_verify"].append(now() - t0)
        assert not problems, problems
        arrays, meta = loaded
        settle()
        t0 = now()
        plain = read_plain(os.path.join(path, kstore.ARRAYS_NAME), meta_arrays(path))
        diag["load_read_only"].append(now() - t0)
        del plain
        t0 = now()
        kstate.assign_variables(model, arrays, meta["variables"], ["model", "optimizer"])
        diag["assign_only"].append(now() - t0)
        del arrays, meta, loaded
    out["diag"] = diag
    out["profiled_bytes"] = nbytes
    return out


def meta_arrays(path):
    with open(os.path.join(path, "state.json"), "rb") as f:
        return json.loads(f.read())["arrays"]


def read_plain(path, entries, chunk=16 * MiB):
    out = {}
    with open(path, "rb", buffering=0) as f:
        for e in entries:
            a = np.empty(tuple(e["shape"]), dtype=np.dtype(e["dtype"]))
            mv = memoryview(a.reshape(-1).view(np.uint8))
            for s in range(0, len(mv), chunk):
                piece = mv[s:s + chunk]
                done = 0
                while done < len(piece):
                    done += f.readinto(piece[done:])
            out[e["name"]] = a
    return out


# ---------------------------------------------------------------- (b) fit overhead


def measure_fit(cfg, workdir):
    """fit() wall and per-epoch times with and without the callback, via kerasbackup.fit().

    Each fit runs `fit_epochs` (2) epochs. With save_freq="epoch" the save of
    epoch 1 is taken at the start of epoch 2 (the callback saves at the next
    hook), so epoch 2's time holds what a save costs training in the steady
    state: the whole save when sync, the snapshot plus the write competing
    with training when async. The save of the last epoch happens in
    on_train_end, which waits for it: it is in the fit() wall, not in an
    epoch. Epoch times come from a callback listed after ours (from its
    on_train_begin / previous on_epoch_end to its on_epoch_end).

    Not model.fit(): on this kind of machine its tf.data iterator sometimes
    takes 7-20 s to tear down after on_train_end (with no callback too),
    which drowns the figure; kerasbackup.fit() feeds numpy batches.
    """
    import keras
    import kerasbackup
    from kerasbackup import BackupAndRestore

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks, self.epochs = [], []

        def on_train_begin(self, logs=None):
            self.marks.append(now())

        def on_epoch_end(self, epoch, logs=None):
            t = now()
            self.epochs.append(t - self.marks[-1])
            self.marks.append(t)

    label, width, layers = cfg["fit_model"]
    batch = cfg["fit_batch"]
    n_epochs = cfg["fit_epochs"]
    model = build_model(width, layers, seed=3)
    rng = np.random.default_rng(3)
    xw = rng.random((batch * 8, width), dtype=np.float32)
    kerasbackup.fit(model, xw, xw, batch_size=batch, epochs=1, verbose=0)  # traces
    t0 = now()
    kerasbackup.fit(model, xw, xw, batch_size=batch, epochs=1, verbose=0)
    step = (now() - t0) / 8
    steps = int(min(cfg["fit_max_steps"], max(10, round(cfg["fit_epoch_seconds"] / step))))
    x = rng.random((batch * steps, width), dtype=np.float32)
    log(f"fit: {label} model, {n_epochs} epochs of {steps} batches of {batch} "
        f"(~{step * steps:.1f} s per epoch at the measured {step * 1000:.0f} ms/step)")

    configs = [  # (name, callback kwargs, repeats)
        ("no callback", None, cfg["fit_repeats"]),
        ('ours, save_freq="epoch", sync', dict(save_freq="epoch", async_save=False),
         cfg["fit_repeats"]),
        ('ours, save_freq="epoch", async (default)', dict(save_freq="epoch", async_save=True),
         cfg["fit_repeats"]),
        ("ours, every 10 batches, sync", dict(save_freq=10, async_save=False),
         cfg["fit_repeats_batches"]),
        ("ours, every 10 batches, async", dict(save_freq=10, async_save=True),
         cfg["fit_repeats_batches"]),
    ]
    out = {"model": label, "params": int(model.count_params()), "batch_size": batch,
           "steps_per_epoch": steps, "epochs": n_epochs, "state_bytes": state_nbytes(model),
           "driver": "kerasbackup.fit()",
           "configs": {name: {"fit": [], "epochs": [], "saves": [], "stall": [],
                              "stalls": []} for name, _, _ in configs}}
    for r in range(max(c[2] for c in configs)):
        for name, kw, reps in configs:
            if r >= reps:
                continue
            settle()
            cb, stalls = None, []
            timer = EpochTimer()
            d = os.path.join(workdir, f"fit-{r}")
            if kw is not None:
                # Keep the checkpoint: with the default delete_checkpoint=True
                # the save of the last epoch is skipped (it would be deleted
                # at once).
                cb = BackupAndRestore(d, delete_checkpoint=False, **kw)
                cb._save = timed(cb._save, stalls)
            cbs = [cb, timer] if cb is not None else [timer]
            with quiet():
                t0 = now()
                kerasbackup.fit(model, x, x, batch_size=batch, epochs=n_epochs, verbose=0,
                                shuffle=False, callbacks=cbs)
                dt = now() - t0
            rec = out["configs"][name]
            rec["fit"].append(dt)
            rec["epochs"].append(timer.epochs)
            rec["saves"].append(cb.saves if cb is not None else 0)
            rec["stall"].append(sum(stalls))
            rec["stalls"].append(stalls)
            shutil.rmtree(d, ignore_errors=True)
            log(f"fit: {name}: {dt:.2f} s (epochs "
                + ", ".join(f"{e:.2f}" for e in timer.epochs)
                + f" s), {rec['saves'][-1]} save(s) blocking {sum(stalls):.2f} s")
    del model, x
    keras.backend.clear_session()
    gc.collect()
    return out


def timed(fn, record):
    def wrapper(*args, **kwargs):
        t0 = now()
        try:
            return fn(*args, **kwargs)
        finally:
            record.append(now() - t0)
    return wrapper


# ---------------------------------------------------------------- per batch, crc32


def measure_batch_cost(cfg, workdir):
    import keras
    from kerasbackup import BackupAndRestore

    model = build_model(16, 1)
    train_steps(model, 16)
    n = cfg["batch_calls"]
    logs = {"loss": 0.5}
    out = {}
    kinds = [
        ("ours, save_freq=10**9", lambda: BackupAndRestore(
            os.path.join(workdir, "pb-int"), save_freq=10**9, async_save=True)),
        ('ours, save_freq="epoch"', lambda: BackupAndRestore(
            os.path.join(workdir, "pb-epoch"), async_save=True)),
        ("ours, save_freq=10**9, save_before_preemption", lambda: BackupAndRestore(
            os.path.join(workdir, "pb-pre"), save_freq=10**9,
            save_before_preemption=True, async_save=True)),
        ("keras.callbacks.BackupAndRestore, save_freq=10**9",
         lambda: keras.callbacks.BackupAndRestore(
             os.path.join(workdir, "pb-keras"), save_freq=10**9)),
    ]
    t_empty = []
    for _ in range(5):
        t0 = now()
        for i in range(n):
            pass
        t_empty.append((now() - t0) / n)
    out["empty loop"] = t_empty
    for name, make in kinds:
        cb = make()
        cb.set_model(model)
        cb.on_train_begin()
        cb.on_epoch_begin(0)
        begin, end = cb.on_train_batch_begin, cb.on_train_batch_end
        times = []
        for _ in range(5):
            t0 = now()
            for i in range(n):
                begin(i, logs)
                end(i, logs)
            times.append((now() - t0) / n)
        out[name] = times
        cb.on_train_end()
    return out


def measure_crc(cfg):
    buf = np.random.default_rng(0).integers(0, 255, cfg["crc_bytes"], dtype=np.uint8)
    out = {"crc32": [], "memcpy": []}
    dst = np.empty_like(buf)
    for _ in range(5):
        t0 = now()
        zlib.crc32(buf)
        out["crc32"].append(buf.nbytes / (now() - t0))
        t0 = now()
        np.copyto(dst, buf)
        out["memcpy"].append(buf.nbytes / (now() - t0))
    return out


# ---------------------------------------------------------------- (f) R overhead


def measure_r(cfg):
    args = [str(a) for a in cfg["small_fit"]]
    out = {"args": cfg["small_fit"]}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    log("small fit through Python (fresh process)")
    try:
        p = subprocess.run([sys.executable, os.path.join(HERE, "fit_small.py"), *args],
                           capture_output=True, text=True, timeout=600, env=env)
        out["python"] = _kb_line(p)
    except (OSError, subprocess.SubprocessError) as e:
        out["python_error"] = f"{type(e).__name__}: {e}"
    rscript = shutil.which("Rscript")
    if rscript is None:
        out["r_error"] = "Rscript not found"
        return out
    log("small fit through R (Rscript)")
    try:
        p = subprocess.run([rscript, os.path.join(HERE, "fit_small.R"), *args],
                           capture_output=True, text=True, timeout=600, env=env)
        out["r"] = _kb_line(p)
    except (OSError, subprocess.SubprocessError, RuntimeError) as e:
        out["r_error"] = f"{type(e).__name__}: {e}"
    return out


def _kb_line(p):
    for line in p.stdout.splitlines():
        if line.startswith("KB_BENCH "):
            return json.loads(line[len("KB_BENCH "):])
    tail = " | ".join((p.stderr or "").strip().splitlines()[-3:])
    raise RuntimeError(f"exit {p.returncode}, no result line; stderr: {tail}")


# ---------------------------------------------------------------- (g) preemption


def measure_preemption(cfg, workdir):
    width, layers, repeats = cfg["preempt"]
    d = os.path.join(workdir, "preempt")
    os.makedirs(d, exist_ok=True)
    out = {"width": width, "layers": layers, "seconds": [], "parent_seconds": [],
           "bytes": [], "errors": []}
    log(f"preemption: child with {layers}x Dense({width}), {repeats} signal(s)")
    p = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "preempt_child.py"), d,
         str(width), str(layers), str(repeats)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    stderr_lines = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(p.stderr), daemon=True)
    reader.start()
    sent = {}
    deadline = now() + 600
    try:
        for line in p.stdout:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "PARAMS":
                out["params"] = int(parts[1])
            elif parts[0] == "READY":
                sent[parts[1]] = now()
                p.send_signal(signal.SIGTERM)
            elif parts[0] == "DONE":
                out["parent_seconds"].append(now() - sent.get(parts[1], now()))
                out["bytes"].append(int(parts[2]))
            elif parts[0] == "FAIL":
                out["errors"].append(line.strip())
            if now() > deadline:
                out["errors"].append("timed out")
                break
    finally:
        if p.poll() is None:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        reader.join(timeout=10)
    for line in stderr_lines:
        m = re.search(r"published.*\(([\d.]+) s after the signal\)", line)
        if m:
            out["seconds"].append(float(m.group(1)))
    if not out["seconds"] and not out["errors"]:
        tail = " | ".join(s.strip() for s in stderr_lines[-3:])
        out["errors"].append(f"no 'published ... after the signal' line (exit "
                             f"{p.returncode}); stderr: {tail}")
    shutil.rmtree(d, ignore_errors=True)
    return out


# ---------------------------------------------------------------- report


def ms(x):
    return f"{x * 1000:.1f} ms" if x < 10 else f"{x:.2f} s"


def mb(x):
    return f"{x / 1e6:.1f} MB"


def fit_epoch(fit, name):
    """Median time of the last epoch of each fit of a config (the steady state)."""
    return median([eps[-1] for eps in fit["configs"][name]["epochs"]])


def mark(ok):
    return "✓" if ok else "✗"


def defaults():
    """The callback's defaults as the code now has them (Python signature, R formals)."""
    from kerasbackup import BackupAndRestore

    sig = inspect.signature(BackupAndRestore.__init__).parameters
    out = {"python": {k: sig[k].default for k in ("save_freq", "async_save")}}
    try:
        with open(os.path.join(ROOT, "R", "callback-backup-and-restore.R")) as f:
            src = f.read()
        formals = src[src.index("callback_backup_and_restore <- function("):]
        formals = formals[:formals.index("{")]
        out["r"] = {k: re.search(rf"{k}\s*=\s*([^,\n)]+)", formals).group(1).strip()
                    for k in ("save_freq", "async_save")}
    except (OSError, ValueError, AttributeError):
        out["r"] = None
    return out


def report(results):
    L = []
    sizes = results["sizes"]
    labels = [s["label"] for s in sizes]
    med = lambda xs: median(xs)  # noqa: E731

    def per_size(fn):
        return [fn(s) for s in sizes]

    L.append(f"# kerasbackup benchmark{' (--quick)' if results['quick'] else ''}")
    L.append("")
    L.append(f"Machine: {results['machine']}")
    L.append("")
    dfl = results.get("defaults")
    if dfl:
        py = dfl["python"]
        r_part = (f"R `callback_backup_and_restore(save_freq = {dfl['r']['save_freq']}, "
                  f"async_save = {dfl['r']['async_save']})`, " if dfl.get("r") else "")
        L.append(f"Defaults of the code measured: {r_part}Python `BackupAndRestore("
                 f"save_freq={py['save_freq']!r}, async_save={py['async_save']})`. "
                 "\"ours async\" is the default configuration; \"ours sync\" is "
                 "`async_save = FALSE`. Both capture as landed: sync saves write "
                 "zero-copy read-only views of the variables, async saves copy them "
                 "into host buffers reused from save to save.")
        L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| Check | Target | Measured | Met |")
    L.append("|---|---|---|---|")

    def target(name, goal, text, ok):
        L.append(f"| {name} | {goal} | {text} | {mark(ok)} |")

    T = lambda s, k: med(s["times"][k])  # noqa: E731
    R = lambda s, k: med(s["restore"][k])  # noqa: E731
    for s in sizes:
        v = T(s, "sync") / T(s, "keras")
        target(f"sync stall / Keras B&R stall, {s['label']}", "≤ 1.5×", f"{v:.2f}×", v <= 1.5)
    for s in sizes:
        v = T(s, "async_stall") / T(s, "keras")
        target(f"async stall / Keras B&R stall, {s['label']}", "≤ 0.25×", f"{v:.2f}×",
               v <= 0.25)
    for s in sizes:
        v = T(s, "raw") / T(s, "sync")
        target(f"effective bandwidth / raw fsynced write, {s['label']}", "≥ 70%",
               f"{v * 100:.0f}%", v >= 0.7)
    fit = results.get("fit")
    if fit:
        base = fit_epoch(fit, "no callback")
        for name, tag in (('ours, save_freq="epoch", async (default)', "async (default)"),
                          ('ours, save_freq="epoch", sync', "sync")):
            v = (fit_epoch(fit, name) - base) / base
            target(f"fit() overhead per epoch, save_freq=\"epoch\", {tag}, "
                   f"{fit['model']}, {base:.1f} s epoch", "≤ 3.5%",
                   f"{v * 100:.1f}% ({(fit_epoch(fit, name) - base) * 1000:+.0f} ms)",
                   v <= 0.035)
    pb = results.get("batch_cost")
    if pb:
        v = med(pb["ours, save_freq=10**9"])
        target("callback work per batch, no save due", "< 50 µs", f"{v * 1e6:.2f} µs",
               v < 50e-6)
    for s in sizes:
        v = (R(s, "ours_total") - R(s, "ours_open")) / R(s, "keras_load_weights")
        target(f"restore (on_train_begin − open) / load_weights(), {s['label']}",
               "≤ 1.2×", f"{v:.2f}×", v <= 1.2)
    L.append("")
    L.append("Stall targets compare our fsynced, atomically published save with "
             "Keras' `_save_model()`, which does not fsync (its data are still in "
             "the page cache when it returns); the row \"Keras B&R + fsync\" below "
             "adds the fsyncs Keras skips.")
    L.append("")

    L.append("## Saves and restores (median of repeats)")
    L.append("")
    L.append("| Figure | " + " | ".join(labels) + " |")
    L.append("|---|" + "---|" * len(labels))
    row = lambda name, fn: L.append(f"| {name} | " + " | ".join(per_size(fn)) + " |")  # noqa: E731
    row("parameters", lambda s: f"{s['params'] / 1e6:.2f} M")
    row("repeats", lambda s: str(s["repeats"]))
    row("state in memory (weights + Adam)", lambda s: mb(s["state_bytes"]))
    row("(c) bytes per checkpoint, ours", lambda s: mb(s["bytes_ours"]))
    row("(c) bytes per checkpoint, Keras (.weights.h5 + json)", lambda s: mb(s["bytes_keras"]))
    row("(a) stall, ours sync (views of the variables)", lambda s: ms(T(s, "sync")))
    row("(a) stall, ours async, the default (copy into reused buffers)",
        lambda s: ms(T(s, "async_stall")))
    row("    ours async, until written", lambda s: ms(T(s, "async_total")))
    row("(a) stall, Keras B&R `_save_model()`", lambda s: ms(T(s, "keras")))
    row("    Keras B&R + fsync of its files", lambda s: ms(T(s, "keras_fsync")))
    row("(d) raw write + fsync of the same bytes", lambda s: ms(T(s, "raw")))
    row("(d) raw bandwidth", lambda s: f"{s['bytes_ours'] / T(s, 'raw') / 1e9:.2f} GB/s")
    row("(d) effective bandwidth, ours sync",
        lambda s: f"{s['bytes_ours'] / T(s, 'sync') / 1e9:.2f} GB/s")
    row("(e) restore, ours: fresh callback's on_train_begin",
        lambda s: ms(R(s, "ours_total")))
    row("    of which store open + lock", lambda s: ms(R(s, "ours_open")))
    row("    store.load() (read + crc32 verify)", lambda s: ms(R(s, "ours_load")))
    row("    check + assign variables", lambda s: ms(R(s, "ours_assign")))
    row("(e) restore, Keras `model.load_weights()`",
        lambda s: ms(R(s, "keras_load_weights")))
    L.append("")

    if fit:
        n_ep = fit.get("epochs", 1)
        base_rec = fit["configs"]["no callback"]
        L.append(f"## (b) fit() overhead ({fit['model']} model, "
                 f"{fit['params'] / 1e6:.1f} M params, {mb(fit['state_bytes'])} state, "
                 f"{n_ep} epochs of {fit['steps_per_epoch']} batches of "
                 f"{fit['batch_size']} per fit, configs interleaved, median of "
                 f"{len(base_rec['fit'])} (every-10-batches rows: "
                 f"{len(fit['configs']['ours, every 10 batches, sync']['fit'])}), "
                 f"Python {fit.get('driver', 'model.fit()')})")
        L.append("")
        L.append(f"| Config | saves per fit | epoch {n_ep} | overhead per epoch | "
                 f"fit() wall ({n_ep} epochs) | overhead per fit | time in `_save()` "
                 "per fit |")
        L.append("|---|---|---|---|---|---|---|")
        base = fit_epoch(fit, "no callback")
        base_w = med(base_rec["fit"])
        for name, rec in fit["configs"].items():
            e = fit_epoch(fit, name)
            w = med(rec["fit"])
            L.append(f"| {name} | {med(rec['saves']):.0f} | {e:.2f} s | "
                     f"{(e - base) / base * 100:+.1f}% ({(e - base) * 1000:+.0f} ms) | "
                     f"{w:.2f} s | {(w - base_w) / base_w * 100:+.1f}% "
                     f"({(w - base_w) * 1000:+.0f} ms) | "
                     f"{med(rec.get('stall', [0])) * 1000:.0f} ms |")
        L.append("")
        ep_txt = f"Epoch length: {base:.1f} s without callback"
        L.append(ep_txt + (" (the issue's target is stated for epochs ≥ 20 s; a "
                           "shorter epoch makes the fixed per-save cost a larger share)."
                           if base < 20 else "."))
        L.append(f"\"Epoch {n_ep}\" is the steady state the target is about: with "
                 f"save_freq=\"epoch\" the save of epoch {n_ep - 1} is taken at the "
                 f"start of epoch {n_ep} (the callback saves at the next hook), so "
                 f"epoch {n_ep}'s time holds the whole save when sync, and the "
                 "snapshot plus the background write competing with training when "
                 "async. It is timed by a callback listed after ours, from its "
                 "previous on_epoch_end to its on_epoch_end.")
        L.append("The fit() wall adds on_train_begin (open, lock, fingerprint) and "
                 "the save of the last epoch, taken in on_train_end, which waits "
                 "for it (async cannot hide it there); `delete_checkpoint=False`, "
                 "the directory is removed outside the timing.")
        L.append("Driver: kerasbackup.fit(), not model.fit(): on this machine "
                 "model.fit()'s tf.data iterator sometimes takes 7-20 s to tear down "
                 "after on_train_end, with no callback too, which drowns the figure.")
        L.append("")

    if pb:
        L.append("## Per-batch callback cost, no save due (on_train_batch_begin + _end)")
        L.append("")
        L.append("| Callback | µs/batch | minus empty loop |")
        L.append("|---|---|---|")
        e = med(pb["empty loop"])
        for name, xs in pb.items():
            L.append(f"| {name} | {med(xs) * 1e6:.3f} | {(med(xs) - e) * 1e6:.3f} |")
        L.append("")

    crc = results.get("crc")
    if crc:
        L.append(f"crc32 (zlib, one thread): {med(crc['crc32']) / 1e9:.2f} GB/s; "
                 f"memcpy (np.copyto): {med(crc['memcpy']) / 1e9:.2f} GB/s.")
        L.append("")

    r = results.get("r_overhead")
    if r:
        n, d, u, ep, b, rep = r["args"]
        L.append(f"## (f) Small fit() through R and Python ({n}×{d} float64 input, "
                 f"Dense({u})-Dense({u})-Dense(1), Adam, {ep} epochs of {n // b} batches, "
                 f"no callback; wall of the fit call only, TF already imported; "
                 f"warm = median of {rep} later calls, cold = first call incl. tracing)")
        L.append("")
        L.append("| Path | cold | warm | warm vs Python kerasbackup.fit() |")
        L.append("|---|---|---|---|")
        py = r.get("python") or {}
        ref = med(py["kerasbackup.fit"]["warm"]) if "kerasbackup.fit" in py else None
        rows = []
        if "r" in r:
            rows.append(("R fit() (Rscript, system.time)", r["r"]))
        for k in ("kerasbackup.fit", "model.fit"):
            if k in py:
                rows.append((f"Python {k}()", py[k]))
        for name, rec in rows:
            w = med(rec["warm"])
            rel = f"{(w - ref) / ref * 100:+.1f}% ({(w - ref) * 1000:+.0f} ms)" if ref else "n/a"
            L.append(f"| {name} | {rec['cold']:.2f} s | {w:.3f} s | {rel} |")
        for k in ("r_error", "python_error"):
            if k in r:
                L.append(f"| {k.split('_')[0]} | not available: {r[k]} | | |")
        L.append("")

    pre = results.get("preemption")
    if pre:
        L.append("## (g) Preemption: SIGTERM to published checkpoint")
        L.append("")
        if pre["seconds"]:
            L.append(f"{pre.get('params', 0) / 1e6:.1f} M params, checkpoint "
                     f"{mb(med(pre['bytes']))}: median {med(pre['seconds']):.2f} s "
                     f"(callback's own figure, {len(pre['seconds'])} signal(s): "
                     + ", ".join(f"{x:.2f}" for x in pre["seconds"])
                     + f" s); parent-side signal → DONE line "
                     f"{med(pre['parent_seconds']):.2f} s.")
        else:
            L.append("Not available: " + "; ".join(pre["errors"]))
        if pre["seconds"] and pre["errors"]:
            L.append("Errors: " + "; ".join(pre["errors"]))
        L.append("")

    profs = [(s["label"], s["profile"]) for s in sizes if s.get("profile")]
    if profs:
        L.append("## Profile of one synchronous save (self time per phase, median)")
        L.append("")
        L.append("| Phase | " + " | ".join(lbl for lbl, _ in profs) + " |")
        L.append("|---|" + "---|" * len(profs))
        names = []
        for _, p in profs:
            for ph in p["phases"]:
                for k in ph:
                    if k not in names:
                        names.append(k)
        for k in names:
            L.append(f"| {k} | " + " | ".join(
                f"{median([ph.get(k, 0.0) for ph in p['phases']]) * 1000:.1f} ms"
                for _, p in profs) + " |")
        L.append("| uninstrumented | " + " | ".join(
            f"{median([t - sum(ph.values()) for t, ph in zip(p['total'], p['phases'])]) * 1000:.1f} ms"
            for _, p in profs) + " |")
        L.append("| **total save** | " + " | ".join(
            f"**{median(p['total']) * 1000:.1f} ms**" for _, p in profs) + " |")
        L.append("")
        missing = sorted({m for _, p in profs for m in p.get("not_instrumented", [])})
        if missing:
            L.append("Not instrumented (no longer in the engine): " + ", ".join(missing))
            L.append("")
        L.append("Save-path diagnostics (same run, same state):")
        L.append("")
        L.append("| Measurement | " + " | ".join(lbl for lbl, _ in profs) + " |")
        L.append("|---|" + "---|" * len(profs))
        D = lambda p, k: median(p["diag"][k])  # noqa: E731
        prow = lambda name, fn: L.append(  # noqa: E731
            f"| {name} | " + " | ".join(fn(p) for _, p in profs) + " |")
        yes = lambda b: "yes" if b else "NO"  # noqa: E731
        prow("sync capture returns read-only views (no copy)",
             lambda p: yes(p["sync_capture_is_views"]))
        prow("async capture copies into the same buffers each save",
             lambda p: yes(p["async_capture_reuses_buffers"]))
        prow("capture_variables, sync (views)", lambda p: ms(D(p, "capture_views")))
        prow("capture_variables, async (copy into reused buffers)",
             lambda p: ms(D(p, "capture_into")))
        prow("json round trip of meta in _snapshot", lambda p: ms(D(p, "json_roundtrip")))
        prow("async stall (`_save()` returns)", lambda p: ms(D(p, "async_stall")))
        prow("train step, no save in flight", lambda p: ms(D(p, "step_idle")))
        prow("train step while the async write runs", lambda p: ms(D(p, "step_busy")))
        prow("raw write + fsync of the checkpoint's bytes", lambda p: ms(D(p, "raw")))
        prow("raw write + fsync + crc32 thread during the fsync",
             lambda p: ms(D(p, "raw_crc_thread")))
        prow("restore: load (read + crc32 verify)", lambda p: ms(D(p, "load_verify")))
        prow("restore: plain read, no crc32", lambda p: ms(D(p, "load_read_only")))
        prow("restore: assign_variables", lambda p: ms(D(p, "assign_only")))
        L.append("")

    L.append(f"Total runtime: {results['runtime_s']:.0f} s; load average at the end "
             f"{results.get('loadavg_end', '?')} (other processes on the machine "
             "disturb the figures; every figure is a median, repeats interleaved).")
    return "\n".join(L)


# ---------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny models, 1 repeat")
    ap.add_argument("--dir", default=None,
                    help="parent of the scratch directory (default: system temp)")
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--skip", default="",
                    help="comma-separated sections to skip: sizes,fit,batch,crc,r,preempt")
    ap.add_argument("--sizes", default=None,
                    help="comma-separated model labels to run (default: all of the mode)")
    args = ap.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.sizes:
        keep = set(args.sizes.split(","))
        cfg["sizes"] = [s for s in cfg["sizes"] if s[0] in keep]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    workdir = tempfile.mkdtemp(prefix="kerasbackup-bench-", dir=args.dir)
    log(f"scratch directory {workdir}")
    results = {"quick": args.quick, "config": {k: v for k, v in cfg.items()},
               "sizes": []}
    try:
        import keras  # noqa: F401  (imported before any timing)

        results["machine"] = machine_line(workdir)
        results["defaults"] = defaults()
        log(results["machine"])
        log(f"defaults: {results['defaults']}")
        if "sizes" not in skip:
            for label, width, layers in cfg["sizes"]:
                results["sizes"].append(measure_size(
                    label, width, layers, cfg["repeats"][label], workdir,
                    cfg["profile"].get(label, 0)))
        if "batch" not in skip:
            log("per-batch callback cost")
            results["batch_cost"] = measure_batch_cost(cfg, workdir)
        if "crc" not in skip:
            results["crc"] = measure_crc(cfg)
        if "fit" not in skip:
            results["fit"] = measure_fit(cfg, workdir)
        if "preempt" not in skip:
            results["preemption"] = measure_preemption(cfg, workdir)
        if "r" not in skip:
            results["r_overhead"] = measure_r(cfg)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["runtime_s"] = time.perf_counter() - T_START
    results["loadavg_end"] = loadavg()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1, default=str)
    text = report(results) if results["sizes"] else "(sizes skipped: no table)"
    print(text, flush=True)
    log(f"done in {results['runtime_s']:.0f} s; raw figures in {args.out}")


if __name__ == "__main__":
    main()
