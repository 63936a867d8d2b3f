"""Times the small fit() of fit_small.R through Python, in a fresh process.

Usage: python bench/fit_small.py N_SAMPLES N_FEATURES UNITS EPOCHS BATCH REPEATS
Prints one line "KB_BENCH {json}": for kerasbackup.fit() and for
model.fit(), the seconds of the first (cold: traces the train step) and of
the following (warm) fit calls. TensorFlow is imported before any timing.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "inst", "python"))

import numpy as np  # noqa: E402
import keras  # noqa: E402

import kerasbackup  # noqa: E402


def build(d, units):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((d,)),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    return model


def main():
    n, d, units, epochs, batch, repeats = (int(a) for a in sys.argv[1:7])
    rng = np.random.default_rng(1)
    # R hands over float64 matrices; do the same so the data path matches.
    x = rng.random((n, d))
    y = (x.sum(axis=1) / d).reshape(n, 1)
    out = {}
    for name in ("kerasbackup.fit", "model.fit"):
        model = build(d, units)
        fit = (lambda **kw: kerasbackup.fit(model, **kw)) if name == "kerasbackup.fit" \
            else model.fit
        times = []
        for _ in range(repeats + 1):
            t = time.perf_counter()
            fit(x=x, y=y, epochs=epochs, batch_size=batch, verbose=0)
            times.append(time.perf_counter() - t)
        out[name] = {"cold": times[0], "warm": times[1:]}
    print("KB_BENCH " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
