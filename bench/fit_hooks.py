"""The cost of each callback inside fit(), attributed: time in its hooks, CPU of our writer.

    python bench/fit_hooks.py [--width 512] [--layers 4] [--steps 116] [--fits 4]

A figure with far less noise than the whole fit()'s wall (bench.py), which
at 1M parameters varies by more than the callbacks cost. Runs `--fits`
pairs of 4-epoch fits through kerasbackup.fit(), ours (defaults) and Keras'
BackupAndRestore (defaults), on one model, and prints per fit the wall time
spent in each callback's hooks (the training thread waits for all of it)
and the CPU time of our background writer (from "staging" to "pruned",
through the store's phase hook); the first pair is left out (our first
capture of a process touches fresh memory). Not in the figure: the write's
disturbance of training (memory bandwidth, the disk) and TF's threads, which
only the whole fit() shows. Defaults give bench.py's 1M model; --width 2048
--layers 6 --steps 9 its 25M one.
"""

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "inst", "python"))
sys.path.insert(0, HERE)


def timed_hooks(cb, totals, counts, tag):
    """Wraps the instance's hooks (Keras' Callback methods) so that each call adds its wall time."""
    import keras

    # on_batch_begin/end are aliases that Callback.on_train_batch_* call:
    # timing them too would count that time twice.
    aliases = {"on_batch_begin", "on_batch_end"}
    for name in dir(keras.callbacks.Callback):
        if name.startswith("on_") and name not in aliases and callable(getattr(cb, name, None)):
            fn = getattr(cb, name)

            def hook(*args, _fn=fn, _key=f"{tag} {name}", **kwargs):
                t = time.perf_counter()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    totals[_key] += time.perf_counter() - t
                    counts[_key] += 1

            setattr(cb, name, hook)
    return cb


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=116)
    p.add_argument("--fits", type=int, default=4, help="at least 2 (the first is left out)")
    args = p.parse_args(argv)
    if args.fits < 2:
        p.error("--fits must be at least 2: the first pair is left out")

    import keras
    import numpy as np

    import bench
    import kerasbackup
    from kerasbackup import BackupAndRestore
    from kerasbackup.store import set_phase_hook

    model = bench.build_model(args.width, args.layers, seed=3)
    x = np.random.default_rng(3).random((32 * args.steps, args.width), dtype=np.float32)
    kerasbackup.fit(model, x, x, batch_size=32, epochs=1, verbose=0)  # traces
    totals, counts = collections.defaultdict(float), collections.Counter()
    started = {}

    def writer(phase, info):
        if phase == "staging":
            started["cpu"] = time.thread_time()
        elif phase == "published":
            counts["ours saves"] += 1
        elif phase == "pruned" and "cpu" in started:
            totals["ours writer CPU"] += time.thread_time() - started.pop("cpu")
            counts["ours writer CPU"] += 1

    d = tempfile.mkdtemp(prefix="kerasbackup-fithooks-")
    previous = set_phase_hook(writer)
    makers = (("ours", BackupAndRestore), ("keras", keras.callbacks.BackupAndRestore))
    try:
        for f in range(args.fits):
            if f == 1:
                totals.clear()
                counts.clear()
            for tag, make in makers:
                bench.settle()
                cb = timed_hooks(make(os.path.join(d, f"{tag}-{f}")), totals, counts, tag)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    kerasbackup.fit(model, x, x, batch_size=32, epochs=4, verbose=0,
                                    shuffle=False, callbacks=[cb])
            bench.settle()
    finally:
        set_phase_hook(previous)
        shutil.rmtree(d, ignore_errors=True)
    fits = args.fits - 1
    print(f"{model.count_params() / 1e6:.2f}M params, {bench.state_nbytes(model) / 1e6:.1f} MB "
          f"state; per fit of 4 epochs, mean of {fits} fits")
    print("| callback | where | ms per fit | calls per fit |\n|---|---|---|---|")
    per_tag = collections.defaultdict(float)
    for key in sorted(totals):
        if key == "ours saves":
            continue
        tag = key.split(" ")[0]
        per_tag[tag] += totals[key]
        print(f"| {tag} | {key[len(tag) + 1:]} | {totals[key] / fits * 1000:.1f} | "
              f"{counts[key] / fits:.0f} |")
    # Keras' callback saves at every epoch end; ours skips the last (deleted at once).
    saves = {"ours": counts.pop("ours saves") / fits, "keras": 4}
    for tag, total in per_tag.items():
        print(f"{tag}: {total / fits * 1000:.0f} ms per fit, {saves[tag]:g} saves, "
              f"{total / fits / saves[tag] * 1000:.1f} ms per save")
    ratio = (per_tag["ours"] / saves["ours"]) / (per_tag["keras"] / saves["keras"])
    print(f"per save, ours / Keras': {ratio:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
