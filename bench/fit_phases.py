"""Where the CPU of our saves goes inside fit(): per save, by thread and phase.

    python bench/fit_phases.py [--width 2048] [--layers 6] [--fits 3] [--epochs 4] [--src DIR]

Runs `--fits` fits of `--epochs` epochs with `BackupAndRestore` (defaults:
asynchronous saves at each epoch end) on one model in one process, as a user
who calls fit() several times would, and prints for each save:

- capture: the training thread's stall in `state.capture()` (wall, thread
  CPU, the thread's minor page faults: each one a first touch of memory);
- write: the saving thread from "staging" to "pruned" (wall, thread CPU,
  faults), split at "arrays_written";
- the process's CPU over the whole fit, against a fit without callback run
  just before (a rough figure on a shared machine).

Also times crc32 of the state's size with zlib and, if installed, isal.
`--src` measures the kerasbackup package in DIR (e.g. another branch's
inst/python), to compare back to back.
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))


def thread_usage():
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return time.perf_counter(), r.ru_utime + r.ru_stime, r.ru_minflt


def process_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def diff(a, b):
    return (b[0] - a[0]) * 1000, (b[1] - a[1]) * 1000, b[2] - a[2]


def crc_speed(nbytes):
    import zlib

    import numpy as np

    data = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    out = []
    impls = [("zlib", zlib.crc32)]
    try:
        from isal import isal_zlib

        impls.append(("isal", isal_zlib.crc32))
    except ImportError:
        pass
    for name, fn in impls:
        fn(data)
        t = time.thread_time()
        fn(data)
        out.append(f"{name} {(time.thread_time() - t) * 1000:.0f} ms")
    return ", ".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--fits", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--src", default=os.path.join(os.path.dirname(HERE), "inst", "python"))
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.src))
    import keras
    import numpy as np

    import kerasbackup
    from kerasbackup import BackupAndRestore
    from kerasbackup import state as training_state
    from kerasbackup.store import set_phase_hook

    sys.path.insert(0, HERE)
    from bench import build_model

    model = build_model(args.width, args.layers, seed=3)
    x = np.random.default_rng(3).random((32 * args.steps, args.width), dtype=np.float32)
    kerasbackup.fit(model, x, x, batch_size=32, epochs=1, verbose=0)  # traces
    nbytes = sum(int(np.prod(v.shape)) * 4 for v in
                 list(model.variables) + list(model.optimizer.variables))
    rows = []
    marks = {}
    original = training_state.capture

    def capture(*a, **k):
        t0 = thread_usage()
        try:
            return original(*a, **k)
        finally:
            rows.append({"capture": diff(t0, thread_usage())})

    def hook(name, info):
        if name in ("staging", "arrays_written", "pruned"):
            marks[name] = thread_usage()
        if name == "pruned":
            rows[-1]["arrays"] = diff(marks["staging"], marks["arrays_written"])
            rows[-1]["rest"] = diff(marks["arrays_written"], marks["pruned"])

    training_state.capture = capture
    previous = set_phase_hook(hook)
    d = tempfile.mkdtemp(prefix="kerasbackup-fitphases-")
    print(f"{model.count_params() / 1e6:.1f}M params, {nbytes / 1e6:.0f} MB state, "
          f"{args.fits} fits of {args.epochs} epochs of {args.steps} batches; "
          f"package {args.src}")
    print(f"crc32 of {nbytes / 1e6:.0f} MB: {crc_speed(nbytes)}")
    print("| fit | save | capture wall / CPU ms / faults | arrays.bin wall / CPU ms / faults "
          "| manifest..pruned wall / CPU ms | fit CPU, ours - none |")
    print("|---|---|---|---|---|---|")
    try:
        for f in range(args.fits):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c = process_cpu()
                kerasbackup.fit(model, x, x, batch_size=32, epochs=args.epochs, verbose=0,
                                shuffle=False)
                base = process_cpu() - c
                first = len(rows)
                c = process_cpu()
                kerasbackup.fit(model, x, x, batch_size=32, epochs=args.epochs, verbose=0,
                                shuffle=False,
                                callbacks=[BackupAndRestore(os.path.join(d, str(f)))])
                for t in threading.enumerate():
                    if t.name in ("kerasbackup-prune", "kerasbackup-free"):
                        t.join()
                ours = process_cpu() - c
            for i, r in enumerate(rows[first:]):
                cap, arr, rest = r["capture"], r.get("arrays"), r.get("rest")
                print(f"| {f} | {i} | {cap[0]:.0f} / {cap[1]:.0f} / {cap[2]} | "
                      + (f"{arr[0]:.0f} / {arr[1]:.0f} / {arr[2]} | "
                         f"{rest[0]:.0f} / {rest[1]:.0f} | " if arr else "- | - | ")
                      + (f"{(ours - base) * 1000:+.0f} ms" if i == 0 else "") + " |")
            sys.stdout.flush()
    finally:
        set_phase_hook(previous)
        training_state.capture = original
        shutil.rmtree(d, ignore_errors=True)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    keras.backend.clear_session()


if __name__ == "__main__":
    main()
