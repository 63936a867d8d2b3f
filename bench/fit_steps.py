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
its disturbance of the steps that follow it. Then the overhead per save
(the totals over no callback, divided by the saves counted in each fit) of
ours and of the plain save against Keras', each with a 95% bootstrap
interval over the repeats (bench.ratio_interval). The defaults are
bench.py's 1M model with 0.25 s epochs.
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
EPOCHS = 4


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
    from kerasbackup.store import set_phase_hook

    model = bench.build_model(args.width, args.layers, seed=3)
    x = np.random.default_rng(3).random((32 * args.steps, args.width), dtype=np.float32)
    configs = {
        "none": None,
        "ours": kerasbackup.BackupAndRestore,
        "plain": bench.PlainSave,
        "keras": keras.callbacks.BackupAndRestore,
    }
    # (config, interval key) -> {repeat: duration}
    times = {name: collections.defaultdict(dict) for name in configs}
    saves = {name: [] for name in configs}  # per repeat
    published = []
    set_phase_hook(lambda phase, info: published.append(1) if phase == "published" else None)

    def fit(name):
        events = []
        d = tempfile.mkdtemp(prefix="kerasbackup-fitsteps-", dir=args.dir)
        make = configs[name]
        cb = make(d) if make else None
        cbs = [timer("before", events)] + ([cb] if cb else []) + [timer("after", events)]
        bench.settle()
        before = len(published)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kerasbackup.fit(model, x, x, batch_size=32, epochs=EPOCHS, verbose=0,
                            shuffle=False, callbacks=cbs)
        bench.join_store_threads()
        shutil.rmtree(d, ignore_errors=True)
        n = (len(published) - before if name == "ours" else cb.writes if name == "plain"
             else EPOCHS if cb else 0)
        return events, n

    names = list(configs)
    for r in range(2 + args.repeats):  # the first two rounds warm up
        k = r % len(names)
        for name in names[k:] + names[:k]:
            events, n = fit(name)
            if r < 2:
                continue
            saves[name].append(n)
            seen = collections.Counter()
            for a, b in zip(events, events[1:]):
                key = (kind(a, b), a[1], b[1], b[2], b[3])
                seen[key] += 1
                times[name][key + (seen[key],)][r - 2] = b[4] - a[4]

    # Per config and kind of interval: a matrix (interval x repeat); an
    # interval missing from some repeats counts as 0 there.
    matrices = {name: collections.defaultdict(list) for name in configs}
    for name in configs:
        for key, by_repeat in times[name].items():
            matrices[name][key[0]].append([by_repeat.get(r, 0.0) for r in range(args.repeats)])
    matrices = {name: {k: np.array(rows) for k, rows in m.items()}
                for name, m in matrices.items()}

    def totals(name, repeats=None):
        """kind -> sum over its intervals of the median over `repeats` (all by default)."""
        return {k: float(np.median(m if repeats is None else m[:, repeats], axis=1).sum())
                for k, m in matrices[name].items()}

    sums = {name: totals(name) for name in configs}
    kinds = sorted(set().union(*[t.keys() for t in sums.values()]))
    print(f"{model.count_params() / 1e6:.2f}M params, {bench.state_nbytes(model) / 1e6:.1f} MB "
          f"state, {EPOCHS} epochs of {args.steps} batches; ms per fit, sums of medians over "
          f"{args.repeats} interleaved repeats")
    print("| interval | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for k in kinds:
        print(f"| {k} | " + " | ".join(f"{sums[n].get(k, 0.0) * 1e3:.2f}" for n in names)
              + " |")
    print("| total | " + " | ".join(f"{sum(sums[n].values()) * 1e3:.2f}" for n in names)
          + " |")
    n_saves = {name: float(np.median(saves[name])) for name in configs}
    print("| saves per fit (median) | " + " | ".join(f"{n_saves[n]:g}" for n in names) + " |")

    def per_save(name, repeats=None):
        over = sum(totals(name, repeats).values()) - sum(totals("none", repeats).values())
        return over / n_saves[name]

    print()
    for name in ("ours", "plain"):
        def ratio(repeats, name=name):
            k = per_save("keras", repeats)
            return per_save(name, repeats) / k if k > 0 else np.nan

        value = ratio(None)
        interval = bench.ratio_interval(ratio, args.repeats)
        ci = ("" if interval is None else
              f", 95% interval {interval[0]:.2f}x to {interval[1]:.2f}x "
              f"(repeats resampled, seed {bench.BOOT_SEED})")
        print(f"overhead per save, {name} / keras: {value:.2f}x{ci}")


if __name__ == "__main__":
    main()
