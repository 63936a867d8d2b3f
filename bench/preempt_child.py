"""Child process for the preemption benchmark (run by bench.py).

Usage: python bench/preempt_child.py WORKDIR UNITS LAYERS REPEATS
For each repeat: trains a dense model (UNITS x UNITS, LAYERS layers, Adam)
with BackupAndRestore(save_before_preemption=True, save_freq=False,
async_save=True) (the default) in a
fresh backup dir, prints "READY <i>" on stdout after a few batches and keeps
training until the parent's SIGTERM stops it. The callback's own stderr
line ("... (X.XX s after the signal)") is the measurement; this script
adds "DONE <i> <checkpoint bytes>" (or "FAIL <i> <error>") on stdout.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "inst", "python"))

import numpy as np  # noqa: E402
import keras  # noqa: E402

import kerasbackup  # noqa: E402


class Ready(keras.callbacks.Callback):
    def __init__(self, tag, after=3):
        super().__init__()
        self.tag, self.after, self.sent = tag, after, False

    def on_train_batch_end(self, batch, logs=None):
        if not self.sent and batch + 1 >= self.after:
            self.sent = True
            print(f"READY {self.tag}", flush=True)


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            if not f.startswith(".") or root != path:
                total += os.path.getsize(os.path.join(root, f))
    return total


def main():
    workdir, units, layers, repeats = sys.argv[1], *map(int, sys.argv[2:5])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((units,))] + [
        keras.layers.Dense(units) for _ in range(layers)])
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    x = np.random.default_rng(0).random((64 * 4096 // units, units), dtype=np.float32)
    model.train_on_batch(x[:32], x[:32])  # builds the model and the optimizer
    print(f"PARAMS {model.count_params()}", flush=True)
    for i in range(repeats):
        backup = os.path.join(workdir, f"preempt-{i}")
        cb = kerasbackup.BackupAndRestore(
            backup, save_freq=False, save_before_preemption=True,
            async_save=True)  # the default
        try:
            model.fit(x, x, batch_size=32, epochs=10**6, verbose=0,
                      callbacks=[cb, Ready(i)])
            print(f"FAIL {i} fit returned without preemption", flush=True)
        except kerasbackup.PreemptedError:
            print(f"DONE {i} {dir_bytes(backup)}", flush=True)
        except Exception as e:  # reported, not raised: the parent decides
            print(f"FAIL {i} {type(e).__name__}: {e}".replace("\n", " "), flush=True)


if __name__ == "__main__":
    main()
