"""kerasbackup benchmark: the cost of a checkpoint, against Keras' BackupAndRestore.

Run with the package's Python (`make bench`), or directly:

    python bench/bench.py            # full run, about 10 minutes on 2 cores
    python bench/bench.py --quick    # smoke run: tiny models, 1 repeat

Writes the report (markdown) to bench/RESULTS.md (or --report) and stdout,
and every raw timing to bench/results.json (or --out). Progress goes to
stderr. See bench/README.md for what each figure times. Everything goes
through public names: the callbacks' hooks, the saver's
wait_until_finished(), the store's phase hook.
"""

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "inst", "python"))

import numpy as np  # noqa: E402

T_START = time.perf_counter()
MiB = 1 << 20

# (label, width, layers): dense layers width x width with bias, Adam.
FULL = {
    "sizes": [("1M", 512, 4), ("25M", 2048, 6)],
    "repeats": {"1M": 9, "25M": 5},
    "fit_sizes": [("1M", 512, 4), ("25M", 2048, 6)],
    # Short fits drift less on a shared machine. At 1M a save costs tens of
    # ms, and 15 pairs of 4 s fits (noise ±0.5 s) could not resolve that:
    # 0.25 s epochs and 40 pairs do. At 25M our write (~0.3 s) must still
    # end within an epoch, as in real training: 1 s epochs, 16 pairs.
    "fit_epoch_seconds": {"1M": 0.25, "25M": 1.0},
    "fit_epochs": 4,
    "fit_repeats": {"1M": 40, "25M": 16},  # multiples of the 4 configs' rotation
    "fit_batch": 32,
    "batch_calls": 200_000,
    "small_fit": (4096, 32, 64, 5, 32, 5),  # samples, features, units, epochs, batch, repeats
    "preempt": (1024, 8, 3),  # width, layers (8.4M params, ~100 MB with Adam), repeats
    # Per backend, each in a process of its own: saves, then fit() overhead.
    "backend_size": ("25M", 2048, 6),
    "backend_repeats": 5,
    "backend_fit": {"fit_epoch_seconds": 2.0, "fit_epochs": 3, "fit_repeats": 3},
    "remote_repeats": {"1M": 5, "25M": 3},
}
QUICK = {
    "sizes": [("60k", 128, 3)],
    "repeats": {"60k": 1},
    "fit_sizes": [("60k", 128, 3)],
    "fit_epoch_seconds": 0.3,
    "fit_epochs": 2,
    "fit_repeats": 1,
    "fit_batch": 32,
    "batch_calls": 2_000,
    "small_fit": (512, 8, 16, 2, 32, 1),
    "preempt": (256, 2, 1),
    "backend_size": ("60k", 128, 3),
    "backend_repeats": 1,
    "backend_fit": {"fit_epoch_seconds": 0.3, "fit_epochs": 2, "fit_repeats": 1},
    "remote_repeats": {"60k": 1},
}
BACKENDS = ("tensorflow", "jax", "torch")


def log(msg):
    print(f"[{time.perf_counter() - T_START:7.1f} s] {msg}", file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def now():
    return time.perf_counter()


BOOT_SEED = 0  # fixed, so that a report's intervals can be recomputed from its JSON


def ratio_interval(statistic, n, resamples=2000, seed=BOOT_SEED):
    """A 95% bootstrap interval of `statistic(indices)` over `n` paired repeats.

    `statistic` takes an array of repeat indices (drawn with replacement,
    the same for every configuration, since they ran side by side in each
    repeat) and returns a ratio, or nan where none can be read. Returns
    `(low, high)`, or None with fewer than 3 repeats.
    """
    if n < 3:
        return None
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    draws = draws[np.isfinite(draws)]
    if draws.size < resamples // 2:
        return None
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def verdict(value, interval, goal):
    """Whether a ratio meets `goal` (at most): True, False, or None when the
    95% interval has the goal inside it (the run cannot tell)."""
    if interval is None:
        return value <= goal
    low, high = interval
    if high <= goal:
        return True
    if low > goal:
        return False
    return None


def cpu_seconds():
    """CPU time of this process so far: every thread, ended ones included.

    Kernel threads' work (the page cache's writeback) is not in it.
    """
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


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



def dir_bytes(path):
    """Bytes of the regular files under `path`."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


# The store's background threads that outlive a save or a fit(): removal of
# pruned checkpoints, and freeing the blocks of deleted ones.
STORE_THREADS = ("kerasbackup-prune", "kerasbackup-free")


def join_store_threads():
    for thread in threading.enumerate():
        if thread.name in STORE_THREADS:
            thread.join()


def settle():
    """Lets the previous measurement's work end, so the next one does not pay for it.

    Waits for the store's background threads (STORE_THREADS), then flushes
    dirty pages.
    """
    join_store_threads()
    os.sync()
    gc.collect()



@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield




# ---------------------------------------------------------------- driving callbacks


def start_fit(cb, model, epochs=10**6, steps=1):
    """Takes a callback through the start of a fit, as Keras' fit() does."""
    cb.set_model(model)
    cb.set_params({"epochs": epochs, "steps": steps, "verbose": 0})
    cb.on_train_begin()
    cb.on_epoch_begin(0)


def ours_save(cb, epoch):
    """One epoch boundary of our callback; returns the seconds training waits.

    on_epoch_end marks the save as due, the next hook (on_epoch_begin) takes
    it: the whole save when synchronous, the snapshot when asynchronous.
    """
    cb.on_epoch_end(epoch, {})
    t = now()
    cb.on_epoch_begin(epoch + 1)
    return now() - t


def keras_save(cb, epoch):
    t = now()
    cb.on_epoch_end(epoch, {})  # Keras' callback saves in the hook itself
    return now() - t


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path):
    """fsyncs every regular file under `path`, then the directories."""
    for root, _, files in os.walk(path):
        for name in files:
            fsync_path(os.path.join(root, name))
        fsync_path(root)


def checkpoint_arrays(model):
    """The arrays a save writes (variables and generators), as the callback captures them."""
    from kerasbackup import state

    arrays = state.capture(model, state.TrainingState(epoch=0),
                           include_metrics=False).host_arrays()
    return [np.ascontiguousarray(a) for a in arrays.values()]


def aligned_copy(arrays):
    """The arrays' bytes back to back in one page-aligned buffer (untimed)."""
    import mmap

    total = sum(a.nbytes for a in arrays)
    buf = mmap.mmap(-1, max(total, 1))
    view, at = memoryview(buf), 0
    for a in arrays:
        view[at:at + a.nbytes] = memoryview(a.reshape(-1)).cast("B")
        at += a.nbytes
    return buf, view[:total]


def raw_write(directory, data, chunk=16 * MiB):
    """The same bytes written the fastest durable way; returns seconds.

    `data` (from aligned_copy()) goes into one new file in `directory`:
    if it is big, by direct I/O (as a save writes a big arrays.bin, but
    straight from one aligned buffer, with no copy and no checksum) where the
    file system allows, the unaligned tail through the page cache; then one fsync of
    the file and one of the directory: what any durable write of these bytes
    needs. A save does all of this and more (a copy and a checksum of the
    data, two small files, the publishing rename and its fsync), so on the
    same disk it cannot be faster; the two are timed interleaved, after the
    same `os.sync()`.
    """
    import fcntl

    path = os.path.join(directory, f".raw-{os.getpid()}-{time.time_ns()}")
    # Like a checkpoint, the file replaces the previous one, which is removed
    # after the new one is durable (untimed; a save prunes in the background).
    previous = [os.path.join(directory, n) for n in os.listdir(directory)
                if n.startswith(".raw-")]
    from kerasbackup.store import fileio

    # Direct I/O for the files a save writes so: big ones (none before the
    # store had direct I/O, when this measures an older version with --src).
    minimum = getattr(fileio, "DIRECT_MIN", None)
    direct = getattr(os, "O_DIRECT", 0) if minimum and len(data) >= minimum else 0
    whole = len(data) - len(data) % 4096 if direct else 0
    t = now()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | direct)
        except OSError:
            whole = 0  # no direct I/O on this file system
        done = 0
        while done < len(data):
            if done == whole and whole:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)  # the tail: page cache
            end = min(len(data), done + chunk, whole if done < whole else len(data))
            done += os.pwrite(fd, data[done:end], done)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_path(directory)
    dt = now() - t
    for old in previous:
        os.unlink(old)
    return dt


PLAIN = "plain durable save: reads, copy, direct write + fsync"


class PlainSave:
    """A durable background save reduced to its plain steps, as a Keras callback.

    At each epoch end but the last (ours skips that one too: it would be
    deleted at once), reads the model's and optimizer's variables as ours
    does (state.capture_variables, zero-copy on TensorFlow) and copies them
    on the training thread into one page-aligned block, reused from fit to
    fit as ours reuses its host buffers; then a thread writes the block with
    raw_write() (direct I/O, fsync of the file and its directory). No
    checksum, no JSON state, no other files, no publishing rename, no lock:
    a reference read beside ours, not a floor (with a big state our
    two-thread copy beats its one). Made on demand: Keras is imported late.
    """

    def __new__(cls, directory):
        import keras

        from kerasbackup import state

        class Plain(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.directory, self.writes, self.thread, self.error = directory, 0, None, None

            def on_train_begin(self, logs=None):
                os.makedirs(self.directory, exist_ok=True)

            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 >= self.params["epochs"]:
                    return
                self.wait()
                arrays, _ = state.capture_variables(self.model, include_metrics=False)
                values = [np.ascontiguousarray(a).reshape(-1).view(np.uint8)
                          for a in arrays.values()]
                view, at = _plain_block(sum(a.nbytes for a in values)), 0
                for a in values:
                    np.copyto(view[at:at + a.nbytes], a)
                    at += a.nbytes
                self.thread = threading.Thread(target=self.write, args=(view,), daemon=True)
                self.thread.start()

            def write(self, view):
                try:
                    raw_write(self.directory, memoryview(view))
                    self.writes += 1
                except BaseException as e:  # raised on the training thread
                    self.error = e

            def on_train_end(self, logs=None):
                self.wait()

            def wait(self):
                if self.thread is not None:
                    self.thread.join()
                    self.thread = None
                error, self.error = self.error, None
                if error is not None:
                    raise error

        return Plain()


_PLAIN_BLOCK = []  # [(size, array)]: PlainSave's block, kept for the next fit


def _plain_block(nbytes):
    """A page-aligned uint8 array of `nbytes`, the same one while the size stays."""
    import mmap

    if not _PLAIN_BLOCK or _PLAIN_BLOCK[0][0] != nbytes:
        memory = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE)
        _PLAIN_BLOCK[:] = [(nbytes, np.frombuffer(memory, np.uint8)[:nbytes])]
    return _PLAIN_BLOCK[0][1]


# ---------------------------------------------------------------- saves and restores


def measure_saves(label, width, layers, repeats, workdir):
    """Stall per save (ours sync, ours async, Keras), the raw write, restores."""
    import keras

    from kerasbackup import BackupAndRestore
    from kerasbackup.store import CheckpointStore, backup_info

    model = build_model(width, layers)
    train_steps(model, width)
    d = os.path.join(workdir, label)
    os.makedirs(d)
    paths = {k: os.path.join(d, k) for k in ("sync", "async", "keras")}
    sync_cb = BackupAndRestore(paths["sync"], async_save=False, delete_checkpoint=False)
    async_cb = BackupAndRestore(paths["async"], delete_checkpoint=False)  # the defaults
    keras_cb = keras.callbacks.BackupAndRestore(paths["keras"], delete_checkpoint=False)
    for cb in (sync_cb, async_cb, keras_cb):
        start_fit(cb, model)
    raw_buffer, raw_data = aligned_copy(checkpoint_arrays(model))
    # Untimed first saves: the timed ones replace a checkpoint, and the
    # asynchronous callback's host buffers exist.
    ours_save(sync_cb, 0)
    ours_save(async_cb, 0)
    async_cb.saver.wait_until_finished()
    keras_save(keras_cb, 0)
    times = {k: [] for k in ("raw", "sync", "async_stall", "async_written",
                             "keras", "keras_fsync")}
    log(f"saves: {label} ({model.count_params() / 1e6:.2f} M params), {repeats} repeats")
    for r in range(1, repeats + 1):
        settle()
        times["raw"].append(raw_write(d, raw_data))
        settle()
        times["sync"].append(ours_save(sync_cb, r))
        settle()
        stall = ours_save(async_cb, r)
        t = now()
        async_cb.saver.wait_until_finished()
        times["async_stall"].append(stall)
        times["async_written"].append(stall + now() - t)
        settle()
        k = keras_save(keras_cb, r)
        t = now()
        fsync_tree(paths["keras"])
        times["keras"].append(k)
        times["keras_fsync"].append(k + now() - t)
    out = {"label": label, "params": int(model.count_params()), "repeats": repeats,
           "state_bytes": state_nbytes(model), "times": times,
           "bytes_ours": backup_info(paths["sync"])[-1]["size_bytes"],
           "bytes_keras": dir_bytes(paths["keras"])}
    # Each pair interleaved: the raw write over our save of the same bytes.
    out["bandwidth_ratios"] = [r / s for r, s in zip(times["raw"], times["sync"])]
    sync_cb.abort()  # ends the fit without a save; the checkpoint stays
    async_cb.abort()

    keras_file = next(os.path.join(paths["keras"], f) for f in os.listdir(paths["keras"])
                      if f.endswith(".weights.h5"))
    rest = {"ours_total": [], "ours_open": [], "keras_load_weights": []}
    log(f"restores: {label}")
    for _ in range(repeats):
        t = now()
        with CheckpointStore(paths["sync"]):
            pass
        rest["ours_open"].append(now() - t)
        fresh = BackupAndRestore(paths["sync"], delete_checkpoint=False)
        with quiet():
            t = now()
            fresh.set_model(model)
            fresh.set_params({"epochs": 10**6, "steps": 1, "verbose": 0})
            fresh.on_train_begin()
            rest["ours_total"].append(now() - t)
        fresh.abort()
        t = now()
        model.load_weights(keras_file)
        rest["keras_load_weights"].append(now() - t)
    out["restore"] = rest
    raw_data.release()
    raw_buffer.close()
    del model
    keras.backend.clear_session()
    gc.collect()
    shutil.rmtree(d, ignore_errors=True)
    return out


# ---------------------------------------------------------------- object storage


S3_SERVER = os.path.join(ROOT, "tests", "testthat", "scripts", "s3_server.py")
S3_BUCKET = "kb-bench"


@contextlib.contextmanager
def s3_server(workdir):
    """moto's S3 server on 127.0.0.1, in a process of its own (as a real server is).

    Yields the storage_options that reach it.
    """
    ready = os.path.join(workdir, "s3.ready")
    proc = subprocess.Popen([sys.executable, S3_SERVER, ready, str(os.getpid()), S3_BUCKET],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not os.path.exists(ready):  # a state: the server wrote its address
            if proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited: {proc.stderr.read()}")
            time.sleep(0.05)
        with open(ready) as f:
            endpoint = f.read().split()[1]
        yield {"endpoint_url": endpoint, "key": "kb-test-key", "secret": "kb-test-secret",
               "client_kwargs": {"region_name": "us-east-1"}}
    finally:
        proc.terminate()
        proc.wait()


def measure_remote(cfg, workdir):
    """Saves to moto's S3 server on loopback against local saves, sync and async.

    The same model's state, saved through the callback's epoch boundary (see
    ours_save), interleaved: local sync, S3 sync, local async, S3 async.
    """
    import keras

    from kerasbackup import BackupAndRestore

    out = []
    with s3_server(workdir) as options:
        for label, width, layers in cfg["sizes"]:
            repeats = cfg["remote_repeats"][label]
            model = build_model(width, layers)
            train_steps(model, width)
            d = os.path.join(workdir, "remote-" + label)
            os.makedirs(d)
            url = f"s3://{S3_BUCKET}/{label}-{os.getpid()}"
            cbs = {
                "local sync": BackupAndRestore(os.path.join(d, "sync"), async_save=False,
                                               delete_checkpoint=False),
                "S3 sync": BackupAndRestore(url + "/sync", async_save=False,
                                            delete_checkpoint=False,
                                            storage_options=options, lease_wait=0),
                "local async": BackupAndRestore(os.path.join(d, "async"),
                                                delete_checkpoint=False),
                "S3 async": BackupAndRestore(url + "/async", delete_checkpoint=False,
                                             storage_options=options, lease_wait=0),
            }
            for cb in cbs.values():
                start_fit(cb, model)
                ours_save(cb, 0)  # untimed: the timed saves replace a checkpoint
                cb.saver.wait_until_finished()
            times = {k: [] for k in cbs}
            written = {k: [] for k in cbs if k.endswith("async")}
            log(f"remote saves: {label} ({model.count_params() / 1e6:.2f} M params), "
                f"{repeats} repeats")
            for r in range(1, repeats + 1):
                for name, cb in cbs.items():
                    settle()
                    stall = ours_save(cb, r)
                    t = now()
                    cb.saver.wait_until_finished()
                    times[name].append(stall)
                    if name in written:
                        written[name].append(stall + now() - t)
            for cb in cbs.values():
                cb.abort()
            out.append({"label": label, "params": int(model.count_params()),
                        "state_bytes": state_nbytes(model), "repeats": repeats,
                        "stall": times, "written": written})
            del model
            keras.backend.clear_session()
            gc.collect()
            shutil.rmtree(d, ignore_errors=True)
    return out


# ---------------------------------------------------------------- fit() overhead


def measure_fit(label, width, layers, cfg, workdir):
    """The whole fit() overhead per save: ours (defaults), Keras' callback (defaults), a plain save.

    A few short epochs per fit, through kerasbackup.fit() (the R fit()'s
    driver) for every configuration, interleaved (PlainSave: a durable background
    save reduced to its plain steps); the median wall of
    each. Our saves are counted with the store's phase hook; Keras' callback
    saves at every epoch end. The process's CPU time is taken too, until the
    fit's background work (the store's threads) has ended: a second figure,
    less disturbed by other processes than the wall.
    """
    import keras

    import kerasbackup
    from kerasbackup import BackupAndRestore
    from kerasbackup.store import set_phase_hook

    def per_size(key):  # a figure for all sizes, or one per size
        value = cfg[key]
        return value[label] if isinstance(value, dict) else value

    batch = cfg["fit_batch"]
    epochs = cfg["fit_epochs"]
    model = build_model(width, layers, seed=3)
    rng = np.random.default_rng(3)
    warm = rng.random((batch * 8, width), dtype=np.float32)
    kerasbackup.fit(model, warm, warm, batch_size=batch, epochs=1, verbose=0)  # traces
    t = now()
    kerasbackup.fit(model, warm, warm, batch_size=batch, epochs=1, verbose=0)
    step = (now() - t) / 8
    steps = max(5, round(per_size("fit_epoch_seconds") / step))
    x = rng.random((batch * steps, width), dtype=np.float32)
    kerasbackup.fit(model, x, x, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    log(f"fit: {label}, {epochs} epochs of {steps} batches "
        f"(~{step * steps:.1f} s per epoch at {step * 1000:.0f} ms/step)")
    published = []

    def count(phase, info):
        if phase == "published":
            published.append(info["path"])

    configs = [
        ("no callback", None),
        ("ours (defaults)", lambda d: BackupAndRestore(d)),
        ("Keras BackupAndRestore (defaults)", lambda d: keras.callbacks.BackupAndRestore(d)),
        (PLAIN, PlainSave),
    ]
    out = {"label": label, "params": int(model.count_params()), "steps": steps,
           "epochs": epochs, "batch": batch, "state_bytes": state_nbytes(model),
           "configs": {name: {"wall": [], "cpu": [], "saves": []}
                       for name, _ in configs}}
    previous = set_phase_hook(count)
    try:
        for r in range(per_size("fit_repeats")):
            # Each repeat runs them back to back, in a rotated order, so
            # that drift on a shared machine hits them alike; overheads are
            # taken per repeat (see fit_overheads()).
            k = r % len(configs)
            for name, make in configs[k:] + configs[:k]:
                settle()
                d = os.path.join(workdir, f"fit-{label}-{r}")
                cbs = [make(d)] if make is not None else []
                before = len(published)
                with quiet():
                    c, t = cpu_seconds(), now()
                    kerasbackup.fit(model, x, x, batch_size=batch, epochs=epochs,
                                    verbose=0, shuffle=False, callbacks=cbs)
                    wall = now() - t
                    join_store_threads()
                    cpu = cpu_seconds() - c
                saves = (len(published) - before if name.startswith("ours")
                         else cbs[0].writes if name == PLAIN
                         else epochs if make is not None else 0)
                out["configs"][name]["wall"].append(wall)
                out["configs"][name]["cpu"].append(cpu)
                out["configs"][name]["saves"].append(saves)
                shutil.rmtree(d, ignore_errors=True)
                log(f"fit: {label} {name}: {wall:.2f} s (CPU {cpu:.2f} s), "
                    f"{saves} save(s)")
    finally:
        set_phase_hook(previous)
    del model, x
    keras.backend.clear_session()
    gc.collect()
    return out


def fit_ratio_interval(fit, key="wall"):
    """95% bootstrap interval of ours' / Keras' overhead per save (see fit_overheads())."""
    configs = fit["configs"]
    if key not in configs["no callback"]:
        return None
    base = np.array(configs["no callback"][key])

    def per_save(name):
        rec = configs[name]
        saves = median(rec["saves"])
        return (np.array(rec[key]) - base) / saves if saves else None

    ours, keras_ = per_save("ours (defaults)"), per_save("Keras BackupAndRestore (defaults)")
    if ours is None or keras_ is None:
        return None

    def ratio(i):
        k = np.median(keras_[i])
        return np.median(ours[i]) / k if k > 0 else np.nan

    return ratio_interval(ratio, len(base))


def fit_overheads(fit, key="wall"):
    """Per config: (overhead per fit, saves per fit, overhead per save, spread).

    Overheads are paired: each repeat's wall (or CPU time, key="cpu") minus
    the same repeat's without callback; the median over repeats is reported,
    with the range of the per-save figures as the spread.
    """
    if key not in fit["configs"]["no callback"]:
        return None, None  # results of a run before CPU times were taken
    base = fit["configs"]["no callback"][key]
    res = {}
    for name, rec in fit["configs"].items():
        if name == "no callback":
            continue
        diffs = [w - b for w, b in zip(rec[key], base)]
        saves = median(rec["saves"])
        per = [d / saves for d in diffs] if saves else [float("nan")]
        res[name] = (median(diffs), saves, median(per), (min(per), max(per)))
    return median(base), res


# ---------------------------------------------------------------- per batch


def measure_batch_cost(cfg, workdir):
    """Hook cost per batch with no save due (on_train_batch_begin + _end)."""
    import keras

    from kerasbackup import BackupAndRestore

    model = build_model(16, 1)
    train_steps(model, 16)
    n = cfg["batch_calls"]
    logs = {"loss": 0.5}

    def loop(cb):
        begin, end = cb.on_train_batch_begin, cb.on_train_batch_end
        t = now()
        for i in range(n):
            begin(i)
            end(i, logs)
        return (now() - t) / n

    makers = {
        "empty loop": lambda d: keras.callbacks.Callback(),
        "ours, save_freq=10**9": lambda d: BackupAndRestore(d, save_freq=10**9),
        'ours, save_freq="epoch"': lambda d: BackupAndRestore(d),
        "ours, save_freq=10**9, save_before_preemption": lambda d: BackupAndRestore(
            d, save_freq=10**9, save_before_preemption=True),
        "keras.callbacks.BackupAndRestore, save_freq=10**9":
            lambda d: keras.callbacks.BackupAndRestore(d, save_freq=10**9),
    }
    out = {name: [] for name in makers}
    for r in range(3):
        for name, make in makers.items():
            d = os.path.join(workdir, f"batch-{r}-{len(out[name])}")
            cb = make(d)
            start_fit(cb, model, steps=10**9)
            out[name].append(loop(cb))
            if isinstance(cb, BackupAndRestore):
                cb.abort()
            shutil.rmtree(d, ignore_errors=True)
    return out


# ---------------------------------------------------------------- R and Python, preemption


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




# ---------------------------------------------------------------- preemption


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



# ---------------------------------------------------------------- per backend


def measure_backends(cfg, quick, workdir, src=None):
    """The same saves and fit() overheads on each backend, one process each, in turn."""
    rows = []
    for backend in BACKENDS:
        out = os.path.join(workdir, f"backend-{backend}.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--backend-row", out,
               "--dir", workdir] + (["--quick"] if quick else []) + (
                   ["--src", src] if src else [])
        log(f"backend {backend}: a process of its own")
        try:
            p = subprocess.run(cmd, env=dict(os.environ, KERAS_BACKEND=backend),
                               stdout=subprocess.DEVNULL, timeout=1800)
            if p.returncode != 0:
                raise RuntimeError(f"exit {p.returncode} (its progress and error are above)")
            with open(out) as f:
                rows.append(json.load(f))
        except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as e:
            rows.append({"backend": backend, "error": f"{type(e).__name__}: {e}"})
    return rows


def backend_row(cfg, workdir):
    """One backend's row (run with KERAS_BACKEND set; see measure_backends)."""
    import keras

    label, width, layers = cfg["backend_size"]
    saves = measure_saves(label, width, layers, cfg["backend_repeats"], workdir)
    fit = measure_fit(label, width, layers, dict(cfg, **cfg["backend_fit"]), workdir)
    return {"backend": keras.backend.backend(), "saves": saves, "fit": fit}


# ---------------------------------------------------------------- report


def ms(x):
    return f"{x * 1000:.1f} ms" if x < 10 else f"{x:.2f} s"


def mb(x):
    return f"{x / 1e6:.1f} MB"


def mark(ok):
    return "?" if ok is None else "✓" if ok else "✗"


def report(results):
    L = []
    add = L.append

    def heading(title, *columns):
        add(f"## {title}")
        add("")
        add("| " + " | ".join(columns) + " |")
        add("|" + "---|" * len(columns))
    sizes = results["sizes"]
    labels = [s["label"] for s in sizes]
    med = median

    add(f"# kerasbackup benchmark{' (--quick)' if results['quick'] else ''}")
    add("")
    add(f"Machine: {results['machine']}")
    add("")
    add("Written by `make bench` (`bench/bench.py`); raw timings in "
        "`bench/results.json`. The machine is shared: compare figures of the "
        "same run. Defaults measured: `BackupAndRestore(backup_dir)` / "
        "`callback_backup_and_restore(backup_dir)` as shipped (save_freq "
        "\"epoch\", asynchronous saves, delete_checkpoint), against "
        "`keras.callbacks.BackupAndRestore(backup_dir)` (its defaults).")
    add("")
    add("## Targets")
    add("")
    add("| Check | Target | Measured | Met |")
    add("|---|---|---|---|")

    def target(name, goal, text, ok):
        add(f"| {name} | {goal} | {text} | {mark(ok)} |")

    for key, what in (("wall", "fit() overhead per save"),
                      ("cpu", "fit() CPU time per save (second figure)")):
        for fit in results.get("fit", []):
            _, over = fit_overheads(fit, key)
            if over is None:
                continue
            ours = over["ours (defaults)"]
            keras_ = over["Keras BackupAndRestore (defaults)"]
            name = f"{what}, ours / Keras' callback, {fit['label']}"
            figures = (f"{ours[2] * 1000:+.0f} ms vs {keras_[2] * 1000:+.0f} ms per "
                       f"save; ranges {ours[3][0] * 1000:+.0f} to "
                       f"{ours[3][1] * 1000:+.0f} and {keras_[3][0] * 1000:+.0f} to "
                       f"{keras_[3][1] * 1000:+.0f} ms")
            interval = fit_ratio_interval(fit, key)
            ci = ("" if interval is None else
                  f"; 95% interval {interval[0]:.2f}× to {interval[1]:.2f}× over the repeats")
            if ours[2] <= 0 or keras_[2] <= 0:
                # A negative overhead is run-to-run noise: no ratio can be read.
                target(name, "≤ 0.2×", f"within noise ({figures}{ci})", None)
            else:
                v = ours[2] / keras_[2]
                target(name, "≤ 0.2×", f"{v:.2f}× ({figures}{ci})",
                       verdict(v, interval, 0.2))
    T = lambda s, k: med(s["times"][k])  # noqa: E731
    for s in sizes:
        v = T(s, "async_stall") / T(s, "keras")
        target(f"stall per save, ours (async, default) / Keras', {s['label']}", "≤ 0.25×",
               f"{v:.2f}×", v <= 0.25)
    for s in sizes:
        v = T(s, "sync") / T(s, "keras")
        target(f"stall per save, ours (sync) / Keras', {s['label']}", "≤ 1.5×",
               f"{v:.2f}×", v <= 1.5)
    for s in sizes:
        # Fastest of the repeats on both sides: the least disturbed by other
        # processes' I/O on a shared disk (see the median of pairs below).
        v = min(s["times"]["raw"]) / min(s["times"]["sync"])
        target(f"raw write of the same bytes / our sync save (fastest of each), "
               f"{s['label']}", "≥ 70%", f"{v * 100:.0f}%", v >= 0.7)
    for s in sizes:
        R = s["restore"]
        v = (med(R["ours_total"]) - med(R["ours_open"])) / med(R["keras_load_weights"])
        target(f"restore (on_train_begin − open) / load_weights(), {s['label']}",
               "≤ 1.2×", f"{v:.2f}×", v <= 1.2)
    for r in results.get("remote", []):
        v = med(r["stall"]["S3 async"]) / med(r["stall"]["local async"])
        target(f"stall per save, S3 on loopback / local, async (the default), {r['label']}",
               "≤ 1.5×", f"{v:.2f}×", v <= 1.5)
    pb = results.get("batch_cost")
    if pb:
        v = med(pb["ours, save_freq=10**9"])
        target("callback work per batch, no save due", "< 50 µs", f"{v * 1e6:.2f} µs",
               v < 50e-6)
    add("")
    if any(len(f["configs"]["no callback"]["wall"]) >= 3 for f in results.get("fit", [])):
        add("The fit() ratios carry a 95% bootstrap interval: the repeats "
            "resampled 2000 times (seed 0), each repeat's four fits together. "
            "✓ when the whole interval is within the target, ✗ when none of "
            "it is, ? when the target lies inside it: the run cannot tell "
            "(more repeats narrow it as 1/√repeats; `bench/fit_steps.py` "
            "gives one too).")
        add("")
    if sizes:
        add("The raw write goes the way our save writes its data (direct I/O "
            "for a big file) and is interleaved with it; a save also copies "
            "the data into its aligned buffer, computes a checksum, writes two "
            "small files and publishes with a rename, so the ratio cannot "
            "exceed 100% but by noise. A median of pairs above 100% (table "
            "below) means the shared disk slowed some raw writes: compare the "
            "fastest of each.")
        add("")

    for fit in results.get("fit", []):
        add(f"## fit() overhead, {fit['label']} ({fit['params'] / 1e6:.2f} M params, "
            f"{mb(fit['state_bytes'])} state, {fit['epochs']} epochs of {fit['steps']} "
            f"batches of {fit['batch']}, kerasbackup.fit(), median of "
            f"{len(fit['configs']['no callback']['wall'])} interleaved)")
        add("")
        add("| Config | measure | fit() (median) | saves per fit | overhead per fit "
            "(median of pairs) | overhead per save | per save, range over repeats |")
        add("|---|---|---|---|---|---|---|")
        for key, what in (("wall", "wall"), ("cpu", "CPU time")):
            base, over = fit_overheads(fit, key)
            if over is None:
                continue
            vals = fit["configs"]["no callback"][key]
            add(f"| no callback | {what} | {base:.2f} s ({min(vals):.2f}-{max(vals):.2f}) "
                "| 0 | | | |")
            for name, (o, n, per, (lo, hi)) in over.items():
                w = fit["configs"][name][key]
                add(f"| {name} | {what} | {median(w):.2f} s | {n:g} | {o * 1000:+.0f} ms "
                    f"({o / base * 100:+.1f}%) | {per * 1000:+.0f} ms | "
                    f"{lo * 1000:+.0f} to {hi * 1000:+.0f} ms |")
        add("")
        add("CPU time is the process's (all threads, 2 cores), up to the end of "
            "the fit's background work. The kernel's writeback of files written "
            "through the page cache (Keras') is not in it; our arrays.bin goes by "
            "direct I/O where the file system allows, done in our thread.")
        add("")
        _, over = fit_overheads(fit)
        if PLAIN in over:
            fl, kr = over[PLAIN][2], over["Keras BackupAndRestore (defaults)"][2]
            if fl > 0 and kr > 0:
                lo, hi = over[PLAIN][3]
                add(f"A minimal durable background save (bench.PlainSave: the "
                    f"variables read and copied on the training thread, then a direct "
                    f"write and fsync of the same bytes from another thread, nothing "
                    f"else) costs {fl * 1000:+.0f} ms per save here (per repeat "
                    f"{lo * 1000:+.0f} to {hi * 1000:+.0f} ms), {fl / kr:.2f}× Keras' "
                    "callback, which writes to the page cache and never fsyncs.")
                add("")
        add("With `delete_checkpoint` (both defaults) Keras' callback writes the "
            "last epoch's checkpoint and deletes it; ours does not write it. Our "
            "saves run in the background (the default `async_save`): training "
            "waits only for the copy of the state to host memory.")
        add("")

    if sizes:  # none when skipped
        add("## Saves and restores (median of repeats)")
        add("")
        add("| Figure | " + " | ".join(labels) + " |")
        add("|---|" + "---|" * len(labels))
        row = lambda name, fn: add(f"| {name} | " + " | ".join(fn(s) for s in sizes) + " |")  # noqa: E731
        row("parameters", lambda s: f"{s['params'] / 1e6:.2f} M")
        row("repeats", lambda s: str(s["repeats"]))
        row("state in memory (weights + Adam)", lambda s: mb(s["state_bytes"]))
        row("bytes per checkpoint, ours", lambda s: mb(s["bytes_ours"]))
        row("bytes per checkpoint, Keras (.weights.h5 + json)", lambda s: mb(s["bytes_keras"]))
        row("stall, ours sync", lambda s: ms(T(s, "sync")))
        row("stall, ours async (the default)", lambda s: ms(T(s, "async_stall")))
        row("  ours async, until written", lambda s: ms(T(s, "async_written")))
        row("stall, Keras' callback", lambda s: ms(T(s, "keras")))
        row("  Keras' callback + fsync of its files", lambda s: ms(T(s, "keras_fsync")))
        row("raw write + fsync of the same bytes", lambda s: ms(T(s, "raw")))
        row("raw write / ours sync, median of pairs",
            lambda s: f"{med(s['bandwidth_ratios']) * 100:.0f}%")
        row("raw write / ours sync, fastest of each",
            lambda s: f"{min(s['times']['raw']) / min(s['times']['sync']) * 100:.0f}%")
        row("restore, ours: fresh callback's on_train_begin",
            lambda s: ms(med(s["restore"]["ours_total"])))
        row("  of which store open + lock", lambda s: ms(med(s["restore"]["ours_open"])))
        row("restore, Keras `model.load_weights()`",
            lambda s: ms(med(s["restore"]["keras_load_weights"])))
        add("")

    rows = results.get("backends")
    if rows:
        first = next((r for r in rows if "saves" in r), None)
        size = (f"{first['saves']['params'] / 1e6:.2f} M params, "
                f"{mb(first['saves']['state_bytes'])} state, " if first else "")
        heading(f"Per backend ({size}one process per backend, in turn; medians)",
                "Backend", "stall, ours async (default)", "stall, ours sync",
                "stall, Keras' callback", "ours async / Keras'",
                "ours async, until written", "raw write + fsync",
                "fit() overhead per save, ours", "Keras' callback", "ours / Keras'")
        for row in rows:
            if "error" in row:
                add(f"| {row['backend']} | error: {row['error']} |" + " |" * 8)
                continue
            sv = row["saves"]
            _, over = fit_overheads(row["fit"])
            ours, kers = (over["ours (defaults)"][2],
                          over["Keras BackupAndRestore (defaults)"][2])
            ratio = (f"{ours / kers:.2f}×" if ours > 0 and kers > 0
                     else "within noise")
            add(f"| {row['backend']} | {ms(T(sv, 'async_stall'))} | {ms(T(sv, 'sync'))} | "
                f"{ms(T(sv, 'keras'))} | {T(sv, 'async_stall') / T(sv, 'keras'):.2f}× | "
                f"{ms(T(sv, 'async_written'))} | {ms(T(sv, 'raw'))} | "
                f"{ours * 1000:+.0f} ms | {kers * 1000:+.0f} ms | {ratio} |")
        add("")
        add("On JAX and torch the asynchronous save's snapshot is a copy on the "
            "variables' device; it reaches host memory on the saver's thread. "
            "On the CPU the device is host memory, so this copy is the same "
            "memcpy as TensorFlow's; the gain is on an accelerator "
            "(`bench/gpu_check.py`).")
        add("")

    remote = results.get("remote")
    if remote:
        add("## Saves to S3 on loopback (moto's server, its own process) against local saves")
        add("")
        add("Median of interleaved repeats, through the callback's epoch boundary. "
            "\"stall\" is what training waits for; asynchronous saves (the default) "
            "upload in the background, in parallel parts for states over 16 MiB.")
        add("")
        rlabels = [r["label"] for r in remote]
        add("| Figure | " + " | ".join(rlabels) + " |")
        add("|---|" + "---|" * len(rlabels))
        rrow = lambda name, fn: add(f"| {name} | " + " | ".join(fn(r) for r in remote) + " |")  # noqa: E731
        rrow("state in memory", lambda r: mb(r["state_bytes"]))
        rrow("repeats", lambda r: str(r["repeats"]))
        for kind in ("sync", "async"):
            for where in ("local", "S3"):
                rrow(f"stall, {where} {kind}", lambda r, k=f"{where} {kind}": ms(med(r["stall"][k])))
            if kind == "async":
                for where in ("local", "S3"):
                    rrow(f"  {where} async, until written",
                         lambda r, k=f"{where} async": ms(med(r["written"][k])))
            rrow(f"S3 / local, {kind} stall", lambda r, k=kind: (
                f"{med(r['stall']['S3 ' + k]) / med(r['stall']['local ' + k]):.2f}×"))
        rrow("S3 / local, async until written", lambda r: (
            f"{med(r['written']['S3 async']) / med(r['written']['local async']):.2f}×"))
        add("")

    pb = results.get("batch_cost")
    if pb:
        heading("Callback cost per batch, no save due (on_train_batch_begin + _end)",
                "Callback", "µs/batch")
        for name, vals in pb.items():
            add(f"| {name} | {med(vals) * 1e6:.3f} |")
        add("")

    rr = results.get("r")
    if rr:
        heading("A small fit() through R and Python (warm: median of later calls)",
                "Path", "cold", "warm")
        for key, name in (("r", "R fit() (Rscript)"), ("python", "Python kerasbackup.fit()")):
            v = rr.get(key)
            if isinstance(v, dict) and "cold" in v:
                add(f"| {name} | {v['cold']:.2f} s | {median(v['warm']):.3f} s |")
            elif isinstance(v, dict) and "kerasbackup.fit" in v:
                add(f"| {name} | {v['kerasbackup.fit']['cold']:.2f} s | "
                    f"{median(v['kerasbackup.fit']['warm']):.3f} s |")
                add(f"| Python model.fit() | {v['model.fit']['cold']:.2f} s | "
                    f"{median(v['model.fit']['warm']):.3f} s |")
        for key in ("r_error", "python_error"):
            if key in rr:
                add(f"| {key} | {rr[key]} | |")
        add("")

    pre = results.get("preemption")
    if pre:
        add("## Preemption: SIGTERM to published checkpoint")
        add("")
        if pre["seconds"]:
            add(f"{pre.get('params', 0) / 1e6:.1f} M params, checkpoint "
                f"{mb(median(pre['bytes'])) if pre['bytes'] else '?'}: median "
                f"{median(pre['seconds']):.2f} s (the callback's own figure, "
                f"{len(pre['seconds'])} signal(s)).")
        for e in pre["errors"]:
            add(f"- error: {e}")
        add("")
    add(f"Total runtime: {results['runtime']:.0f} s; load average at the end "
        f"{results['load_end']}.")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models, one repeat")
    p.add_argument("--out", default=os.path.join(HERE, "results.json"))
    p.add_argument("--report", default=None,
                   help="markdown report (default: bench/RESULTS.md, none with --quick)")
    p.add_argument("--dir", default=None, help="parent of the scratch directory")
    p.add_argument("--skip", default="",
                   help="comma list of: saves,fit,remote,batch,r,preempt,backends")
    p.add_argument("--backend-row", default=None, metavar="JSON",
                   help="internal: measure this process' backend only, into JSON")
    p.add_argument("--src", default=None,
                   help="directory holding the kerasbackup package to measure (default: "
                        "this checkout's inst/python), e.g. another branch's, to compare")
    p.add_argument("--from-json", default=None,
                   help="only write the report of an earlier run's results.json")
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            text = report(json.load(f))
        if args.report:
            with open(args.report, "w") as f:
                f.write(text)
        sys.stdout.write(text)
        return 0
    if args.src:
        sys.path.insert(0, os.path.abspath(args.src))
    cfg = QUICK if args.quick else FULL
    report_path = args.report or (None if args.quick else os.path.join(HERE, "RESULTS.md"))
    skip = set(filter(None, args.skip.split(",")))
    workdir = tempfile.mkdtemp(prefix="kerasbackup-bench-", dir=args.dir)
    if args.backend_row:
        try:
            row = backend_row(cfg, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        with open(args.backend_row, "w") as f:
            json.dump(row, f)
        return 0
    results = {"quick": args.quick}
    try:
        results["machine"] = machine_line(workdir)
        if "saves" not in skip:
            results["sizes"] = [measure_saves(label, w, n, cfg["repeats"][label], workdir)
                                for label, w, n in cfg["sizes"]]
        else:
            results["sizes"] = []
        if "fit" not in skip:
            results["fit"] = [measure_fit(label, w, n, cfg, workdir)
                              for label, w, n in cfg["fit_sizes"]]
        if "remote" not in skip:
            results["remote"] = measure_remote(cfg, workdir)
        if "batch" not in skip:
            results["batch_cost"] = measure_batch_cost(cfg, workdir)
        if "r" not in skip:
            results["r"] = measure_r(cfg)
        if "preempt" not in skip:
            results["preemption"] = measure_preemption(cfg, workdir)
        if "backends" not in skip:
            results["backends"] = measure_backends(cfg, args.quick, workdir, args.src)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["runtime"] = time.perf_counter() - T_START
    results["load_end"] = loadavg()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    text = report(results)
    if report_path:
        with open(report_path, "w") as f:
            f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
