"""Where each callback's cost lands in fit(): its hooks, and the training steps after a save.

    python bench/fit_steps.py [--width 512] [--layers 4] [--steps 27] [--repeats 30] [--dir DIR]

Runs interleaved 4-epoch fits through kerasbackup.fit() with no callback,
ours (defaults), bench.PlainSave (a durable background write of the same
bytes, nothing else) and Keras' BackupAndRestore (defaults), with a timing
callback listed before the measured one and another after it. Each
interval between two consecutive hook calls gets the median over the
repeats, summed by kind, per fit:

- `hooks <name>`: the measured callback's own hooks (between the two timers);
- `steps after a save`: the first 6 training steps of epochs 2-4, which
  run while a background write of the previous epoch's save goes on;
- `later steps`: the other training steps;
- `keras <a>-><b>`: Keras' own work between hooks.

The whole fit()'s wall (bench.py) mixes all of these with noise; the
medians per interval separate a save's cost on the training thread from
its disturbance of the steps that follow it. The defaults are bench.py's
1M model with 0.25 s epochs.
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

AFTER_SAVE = 6  # steps counted as "after a save" at the start of epochs 2-4


def timer(tag, events):
    """A callback that records (tag, hook, epoch, batch, time) at each hook."""
    import keras

    class Timer(keras.callbacks.Callback):
        epoch = -1

        def mark(self, hook, batch=-1):
            events.append((tag, hook, self.epoch, batch, time.perf_counter()))

        def on_train_begin(self, logs=None):
            self.mark("train_begin")

        def on_train_end(self, logs=None):
            self.mark("train_end")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.mark("epoch_begin")

        def on_epoch_end(self, epoch, logs=None):
            self.mark("epoch_end")

        def on_train_batch_begin(self, batch, logs=None):
            self.mark("batch_begin", batch)

        def on_train_batch_end(self, batch, logs=None):
            self.mark("batch_end", batch)

    return Timer()


def kind(a, b):
    """The kind of the interval from event `a` to event `b`."""
    if a[0] == "before" and b[0] == "after" and a[1] == b[1]:
        return f"hooks {a[1]}"
    if a[1] == "batch_begin" and b[1] == "batch_end" and a[0] == "after":
        return ("steps after a save" if b[2] > 0 and b[3] < AFTER_SAVE
                else "later steps")
    return f"keras {a[1]}->{b[1]}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=27, help="batches of 32 per epoch")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--dir", help="parent of the backup dirs (the disk measured); default: the temp dir")
    args = p.parse_args(argv)

    import keras
    import numpy as np

    import bench
    import kerasbackup

    model = bench.build_model(args.width, args.layers, seed=3)
    x = np.random.default_rng(3).random((32 * args.steps, args.width), dtype=np.float32)
    configs = {
        "none": None,
        "ours": kerasbackup.BackupAndRestore,
        "plain": bench.PlainSave,
        "keras": keras.callbacks.BackupAndRestore,
    }
    # (config, interval key) -> one duration per repeat
    times = {name: collections.defaultdict(list) for name in configs}

    def fit(name):
        events = []
        d = tempfile.mkdtemp(prefix="kerasbackup-fitsteps-", dir=args.dir)
        make = configs[name]
        cbs = [timer("before", events)] + ([make(d)] if make else []) + [timer("after", events)]
        bench.settle()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kerasbackup.fit(model, x, x, batch_size=32, epochs=4, verbose=0,
                            shuffle=False, callbacks=cbs)
        bench.join_store_threads()
        shutil.rmtree(d, ignore_errors=True)
        return events

    names = list(configs)
    for r in range(2 + args.repeats):  # the first two rounds warm up
        k = r % len(names)
        for name in names[k:] + names[:k]:
            events = fit(name)
            if r < 2:
                continue
            seen = collections.Counter()
            for a, b in zip(events, events[1:]):
                key = (kind(a, b), a[1], b[1], b[2], b[3])
                seen[key] += 1
                times[name][key + (seen[key],)].append(b[4] - a[4])

    totals = {name: collections.defaultdict(float) for name in configs}
    for name in configs:
        for key, values in times[name].items():
            # A key missing from some repeats counts as 0 there.
            values = values + [0.0] * (args.repeats - len(values))
            totals[name][key[0]] += float(np.median(values))
    kinds = sorted(set().union(*[t.keys() for t in totals.values()]))
    print(f"{model.count_params() / 1e6:.2f}M params, {bench.state_nbytes(model) / 1e6:.1f} MB "
          f"state, 4 epochs of {args.steps} batches; ms per fit, sums of medians over "
          f"{args.repeats} interleaved repeats")
    print("| interval | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for k in kinds:
        print(f"| {k} | " + " | ".join(f"{totals[n][k] * 1e3:.2f}" for n in names) + " |")
    print("| total | " + " | ".join(f"{sum(totals[n].values()) * 1e3:.2f}" for n in names)
          + " |")


if __name__ == "__main__":
    main()
