"""kerasbackup on a GPU: exact resume, and the stall of an asynchronous save.

For JAX and torch (one process per step, KERAS_BACKEND set for each):

1. Exact resume on the device. Three fresh processes train the same model
   with `kerasbackup.fit()` (Dropout with seed=None, Adam, asynchronous
   saves every 5 batches): one straight through; one that dies with
   `os._exit()` mid-epoch once a checkpoint is published; one that resumes
   from it, seeded differently on purpose. The final weights, optimizer
   variables and history must be bit-identical. The backends' determinism
   switches are on (XLA_FLAGS=--xla_gpu_deterministic_ops=true;
   torch.use_deterministic_algorithms(True) with CUBLAS_WORKSPACE_CONFIG).
2. The stall of a save, in one process, on one model (default 537M
   parameters with Adam, 6.4 GB of state: the issue's anchor), repeats
   interleaved, the first reported apart:
   - ours: `BackupAndRestore` at its defaults (asynchronous): the snapshot
     is a copy on the device, brought to host memory and written on the
     saver's thread;
   - JAX: Orbax `CheckpointManager` with asynchronous checkpointing;
   - torch: `torch.distributed.checkpoint.async_save`;
   - Keras' own `BackupAndRestore` save, and a raw write + fsync of the
     same bytes.
   "stall" is the time until the save hands training back; "+ next step"
   is that plus the next train step, minus a train step alone (what the
   device copy costs the step that follows).

Targets (issue 11): on JAX a stall no longer than Orbax's; on torch at
least 10x shorter than DCP's.

Usage:

    python bench/gpu_check.py                       # both backends, 537M params on a GPU
    python bench/gpu_check.py --params 2e6 --repeats 2   # a CPU smoke run (make test runs one)
    python bench/gpu_check.py --backends jax --skip keras,raw

A machine without Keras (GPU machines often have jax, torch and Orbax
only) gets it from wheels brought along. Where PyPI can be reached:

    pip download keras==3.15.1 --no-deps -d wheels/
    pip download --no-deps absl-py namex optree ml-dtypes h5py rich \\
        markdown-it-py mdurl pygments packaging typing-extensions \\
        --only-binary=:all: --platform manylinux2014_x86_64 \\
        --python-version 3.11 -d wheels/      # repeat for 3.10, 3.12: the GPU
                                              # machine's Python is not known
On the GPU machine, from the repository root (only what is missing is
installed; its numpy, jax and torch are left alone):

    pip install --no-index --find-links wheels/ keras==3.15.1
    python bench/gpu_check.py --json gpu_check.json

kerasbackup itself is found in inst/python (no install needed). The exit
status is 0 when every exact-resume check passed and every step ran.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "inst", "python"))

BACKENDS = ("jax", "torch")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def determinism_env(backend):
    if backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        return {"XLA_FLAGS": (flags + " --xla_gpu_deterministic_ops=true").strip()}
    return {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def child_env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1")
    env.update(determinism_env(backend))
    return env


def run_child(backend, args, timeout):
    """Runs this script in a child process; returns its JSON result line."""
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    p = subprocess.run(cmd, env=child_env(backend), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith("KB_GPU "):
            return json.loads(line[len("KB_GPU "):])
    tail = "\n".join(p.stderr.strip().splitlines()[-15:])
    raise RuntimeError(f"{' '.join(args[:2])}: exit {p.returncode}, no result; "
                       f"stderr:\n{tail}")


def emit(result):
    print("KB_GPU " + json.dumps(result), flush=True)


# ---------------------------------------------------------------- the backend


def setup_backend():
    """Determinism switches and a description of the device."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
        device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                  else "CPU")
        versions = f"torch {torch.__version__}"
    else:
        import jax

        device = str(jax.devices()[0].device_kind)
        versions = f"jax {jax.__version__}"
    import numpy as np

    return {"backend": backend, "device": device, "python": platform.python_version(),
            "versions": f"keras {keras.__version__}, {versions}, numpy {np.__version__}"}


def sync_device(model):
    """Waits for the device's queued work on the model (the timing points need it)."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    else:
        import jax

        jax.block_until_ready([v.value for v in model.variables
                               + model.optimizer.variables])


# ---------------------------------------------------------------- 1. exact resume


def resume_run(role, backup_dir, out):
    """One of the three processes of the exact-resume check."""
    import numpy as np

    import keras

    import kerasbackup

    info = setup_backend()
    # The resumed process seeds differently: all must come from the checkpoint.
    keras.utils.set_random_seed(99 if role == "resume" else 7)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 32)).astype("float32")
    y = (x @ rng.standard_normal((32, 1))).astype("float32")
    model = keras.Sequential([
        keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.3), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
    backup = kerasbackup.BackupAndRestore(backup_dir, save_freq=5)

    class Die(keras.callbacks.Callback):
        """Dies at batch 6 of epoch 2 once the save after batch 5 is published."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if role == "crash" and self.epoch == 1 and batch == 6:
                backup.saver.wait_until_finished()
                os._exit(17)

    kerasbackup.fit(model, x, y, batch_size=16, epochs=3, verbose=0,
                    validation_split=0.25, callbacks=[Die(), backup])
    arrays = {f"v{i}": np.array(v.numpy()) for i, v in
              enumerate(model.variables + model.optimizer.variables)}
    arrays["history"] = np.array(json.dumps(model.history.history))
    np.savez(out, **arrays)
    emit(dict(info, role=role))


def exact_resume(backend, timeout):
    d = tempfile.mkdtemp(prefix=f"kb-gpu-resume-{backend}-")
    try:
        outs = {}
        for role in ("full", "crash", "resume"):
            backup = os.path.join(d, "backup-full" if role == "full" else "backup")
            outs[role] = os.path.join(d, f"{role}.npz")
            cmd = ["--resume-run", role, "--backup-dir", backup, "--out", outs[role]]
            if role == "crash":
                p = subprocess.run([sys.executable, os.path.abspath(__file__), *cmd],
                                   env=child_env(backend), capture_output=True,
                                   text=True, timeout=timeout)
                if p.returncode != 17:
                    raise RuntimeError(f"the crash run ended with {p.returncode}: "
                                       f"{p.stderr.strip()[-1500:]}")
            else:
                info = run_child(backend, cmd, timeout)
        import numpy as np

        full, resumed = np.load(outs["full"]), np.load(outs["resume"])
        differ = [k for k in full.files
                  if not (full[k].dtype == resumed[k].dtype
                          and np.array_equal(full[k], resumed[k]))]
        return dict(info, exact=not differ, differ=differ)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- 2. stalls


def build(params):
    """Dense layers of equal width with Adam, about `params` parameters, trained one step."""
    import numpy as np

    import keras

    layers = 8
    width = max(64, int(round((params / layers) ** 0.5 / 64)) * 64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((width,))] +
                             [keras.layers.Dense(width) for _ in range(layers)])
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    x = np.random.default_rng(1).random((8, width), dtype=np.float32)
    model.train_on_batch(x, x)
    return model, x


def state_tree(model):
    """The state the other checkpointers save: the same arrays, by name."""
    variables = list(model.variables) + list(model.optimizer.variables)
    return {f"{i:05d}": v.value for i, v in enumerate(variables)}


def host_arrays(model):
    import numpy as np

    return [np.ascontiguousarray(np.asarray(v.numpy()))
            for v in list(model.variables) + list(model.optimizer.variables)]


def stalls(params, repeats, skip, workdir):
    import numpy as np

    import keras

    from kerasbackup import BackupAndRestore
    sys.path.insert(0, HERE)
    import bench

    info = setup_backend()
    backend = info["backend"]
    model, x = build(params)
    nbytes = bench.state_nbytes(model)
    log(f"{backend}: {model.count_params() / 1e6:.0f}M params, {nbytes / 1e9:.2f} GB "
        f"of state on {info['device']}")

    def step():
        model.train_on_batch(x, x)
        sync_device(model)

    rows = {}

    def timed(name, save, finish):
        """Stall of `save()`, then with the next step, then until `finish()` is done."""
        sync_device(model)
        t0 = time.perf_counter()
        save()
        t1 = time.perf_counter()
        step()
        t2 = time.perf_counter()
        finish()
        t3 = time.perf_counter()
        rows.setdefault(name, []).append({"stall": t1 - t0, "with_step": t2 - t0,
                                          "done": t3 - t0})

    savers = []
    ours = BackupAndRestore(os.path.join(workdir, "ours"), delete_checkpoint=False)
    bench.start_fit(ours, model)
    counter = {"epoch": 0}

    def ours_save():
        counter["epoch"] += 1
        ours.on_epoch_end(counter["epoch"], {})
        ours.on_epoch_begin(counter["epoch"] + 1)  # the save due is taken here

    savers.append(("ours (async, default)", ours_save,
                   lambda: ours.saver.wait_until_finished()))
    if backend == "jax":
        try:
            import orbax.checkpoint as ocp

            mgr = ocp.CheckpointManager(
                os.path.join(workdir, "orbax"),
                options=ocp.CheckpointManagerOptions(max_to_keep=1,
                                                     enable_async_checkpointing=True))
            savers.append(("Orbax CheckpointManager (async)",
                           lambda: mgr.save(counter["epoch"],
                                            args=ocp.args.StandardSave(state_tree(model))),
                           mgr.wait_until_finished))
        except ImportError as e:
            rows["Orbax CheckpointManager (async)"] = f"not run: {e}"
    else:
        try:
            import torch.distributed.checkpoint as dcp

            pending = []

            def dcp_save():
                target = os.path.join(workdir, "dcp")
                shutil.rmtree(target, ignore_errors=True)
                pending.append(dcp.async_save(state_tree(model), checkpoint_id=target))

            savers.append(("torch DCP async_save", dcp_save,
                           lambda: pending.pop().result()))
        except ImportError as e:
            rows["torch DCP async_save"] = f"not run: {e}"
    if "keras" not in skip:
        theirs = keras.callbacks.BackupAndRestore(os.path.join(workdir, "keras"),
                                                  delete_checkpoint=False)
        bench.start_fit(theirs, model)
        savers.append(("Keras BackupAndRestore", lambda: theirs.on_epoch_end(
            counter["epoch"], {}), lambda: None))
    if "raw" not in skip:
        raw_dir = os.path.join(workdir, "raw")
        os.makedirs(raw_dir)
        savers.append(("raw write + fsync (from host arrays)",
                       lambda: bench.raw_write(raw_dir, host_arrays(model)), lambda: None))

    alone = []
    for r in range(repeats):
        for name, save, finish in savers[r % len(savers):] + savers[:r % len(savers)]:
            bench.settle()
            timed(name, save, finish)
            log(f"{backend} repeat {r + 1}/{repeats}: {name}: stall "
                f"{rows[name][-1]['stall']:.3f} s, done {rows[name][-1]['done']:.2f} s")
        sync_device(model)
        t = time.perf_counter()
        step()
        alone.append(time.perf_counter() - t)
    ours.abort()
    return dict(info, params=int(model.count_params()), state_bytes=nbytes,
                repeats=repeats, step_alone=alone, rows=rows)


# ---------------------------------------------------------------- report


def summary(result):
    lines = []
    if "error" in result:
        return [f"{result['backend']}: ERROR {result['error']}"]
    res = result.get("resume")
    if res:
        lines.append(f"{result['backend']} on {res['device']} ({res['versions']}, "
                     f"Python {res['python']}): exact resume "
                     + ("PASSED" if res["exact"] else f"FAILED ({res['differ']})"))
    st = result.get("stalls")
    if not st:
        return lines
    step = statistics.median(st["step_alone"])
    lines.append(f"  save of {st['params'] / 1e6:.0f}M params, {st['state_bytes'] / 1e9:.2f} GB "
                 f"state, {st['repeats']} repeats interleaved; train step alone "
                 f"{step * 1000:.1f} ms")
    lines.append(f"  {'':38s} {'stall first':>12s} {'stall warm':>11s} "
                 f"{'+ next step':>12s} {'until done':>11s}")
    warm = {}
    for name, rec in st["rows"].items():
        if isinstance(rec, str):
            lines.append(f"  {name:38s} {rec}")
            continue
        later = rec[1:] or rec
        warm[name] = statistics.median(r["stall"] for r in later)
        extra = statistics.median(r["with_step"] - r["stall"] for r in later) - step
        lines.append(f"  {name:38s} {rec[0]['stall']:11.3f}s {warm[name]:10.3f}s "
                     f"{warm[name] + extra:11.3f}s "
                     f"{statistics.median(r['done'] for r in later):10.2f}s")
    ours = warm.get("ours (async, default)")
    if ours is not None and "Orbax CheckpointManager (async)" in warm:
        other = warm["Orbax CheckpointManager (async)"]
        lines.append(f"  target: ours <= Orbax's stall: {ours:.3f} s vs {other:.3f} s "
                     f"({'met' if ours <= other else 'NOT met'})")
    if ours is not None and "torch DCP async_save" in warm:
        other = warm["torch DCP async_save"]
        lines.append(f"  target: DCP's stall >= 10x ours: {other / ours:.1f}x "
                     f"({'met' if other >= 10 * ours else 'NOT met'})")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--params", type=float, default=None,
                   help="model size (default 537e6 with a GPU, 2e6 without)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip", default="", help="comma list of: resume,stalls,keras,raw")
    p.add_argument("--timeout", type=int, default=300, help="seconds per child process")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--dir", default=None, help="parent of the scratch directory")
    # Internal: the child processes.
    p.add_argument("--resume-run", choices=["full", "crash", "resume"])
    p.add_argument("--backup-dir")
    p.add_argument("--out")
    p.add_argument("--stalls", action="store_true")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    if args.resume_run:
        resume_run(args.resume_run, args.backup_dir, args.out)
        return 0
    if args.stalls:
        workdir = tempfile.mkdtemp(prefix="kb-gpu-stalls-", dir=args.dir)
        try:
            emit(stalls(args.params, args.repeats, skip, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0

    results, ok = [], True
    for backend in args.backends.split(","):
        if backend not in BACKENDS:
            p.error(f"--backends: {backend!r} is not one of {', '.join(BACKENDS)}")
        result = {"backend": backend}
        try:
            if "resume" not in skip:
                log(f"{backend}: exact resume (3 processes)")
                result["resume"] = exact_resume(backend, args.timeout)
                ok = ok and result["resume"]["exact"]
            if "stalls" not in skip:
                params = args.params or (537e6 if _has_gpu(backend) else 2e6)
                log(f"{backend}: save stalls")
                cmd = ["--stalls", "--params", str(params), "--repeats", str(args.repeats),
                       "--skip", args.skip] + (["--dir", args.dir] if args.dir else [])
                result["stalls"] = run_child(backend, cmd, args.timeout)
        except (RuntimeError, subprocess.SubprocessError, OSError) as e:
            result["error"] = f"{type(e).__name__}: {e}"
            ok = False
        results.append(result)
        print("\n".join(summary(result)), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if ok else 1


def _has_gpu(backend):
    code = ("import torch; print(torch.cuda.is_available())" if backend == "torch" else
            "import jax; print(jax.default_backend() != 'cpu')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    return p.stdout.strip() == "True"


if __name__ == "__main__":
    sys.exit(main())
