"""A training "job" for the kill -9 and preemption tests.

Trains the small model of helpers_training with kerasbackup.fit() and a
BackupAndRestore callback. On completion it writes the final state (weights,
optimizer, History, callback states) to --out as an .npz and exits 0. When
fit() raises (PreemptedError, PreemptionAbort, ...) it writes the exception's
type and attributes as JSON to --result, then re-raises: the exit status is
non-zero, as a preempted job's must be.

Progress is visible from outside through the backup directory. With
--pause-save N the N-th checkpoint write of the process stops once its data
is written (nothing published yet), creates `<backup-dir>.saving` and waits
until the parent creates `<backup-dir>.go-N` (or the save is cancelled), so
a parent can send a signal while a save is in flight (kerasbackup.testing).
--ready-file is written at the first batch, once fit()'s signal handlers
are installed; with --hold-after-ready the job then waits there until the
parent creates `<ready-file>.release` (it signals first: a known point).
"""

import argparse
import json
import os
import sys
import time

import helpers_training as ht


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--backup-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--result", default=None)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--save-freq", default="2")
    p.add_argument("--batch-sleep", type=float, default=0.0)
    p.add_argument("--pause-save", type=int, action="append", default=[])
    p.add_argument("--preempt", action="store_true")
    p.add_argument("--signals", default="SIGTERM,SIGUSR1")
    p.add_argument("--async-save", action="store_true")
    p.add_argument("--ready-file", default=None,
                   help="written at the first batch, once fit()'s handlers are installed")
    p.add_argument("--hold-after-ready", action="store_true",
                   help="then wait until <ready-file>.release exists")
    return p.parse_args(argv)


def save_freq_value(text):
    if text == "epoch":
        return "epoch"
    if text.lower() == "false":
        return False
    return int(text)


def main(argv=None):
    args = parse_args(argv)
    import keras

    import kerasbackup
    from kerasbackup.testing import PauseSave

    class Pace(keras.callbacks.Callback):
        """Slows training down (so that signals land mid-run) and reports readiness."""

        def on_train_batch_begin(self, batch, logs=None):
            if args.ready_file and not os.path.exists(args.ready_file):
                tmp = args.ready_file + ".tmp"
                with open(tmp, "w") as f:
                    f.write(str(os.getpid()))
                os.replace(tmp, args.ready_file)
                if args.hold_after_ready:
                    ht.hold_until(args.ready_file + ".release")

        def on_train_batch_end(self, batch, logs=None):
            if args.batch_sleep:
                time.sleep(args.batch_sleep)

    x, y = ht.make_data(70)
    model = ht.make_model(schedule=False)
    siblings = ht.make_callbacks(10, True)
    backup = kerasbackup.BackupAndRestore(
        args.backup_dir, save_freq=save_freq_value(args.save_freq),
        save_before_preemption=args.preempt,
        preemption_signals=args.signals.split(","),
        async_save=args.async_save)
    if args.pause_save:
        d = args.backup_dir.rstrip("/")
        PauseSave(d + ".saving", d + ".go-{n}", saves=args.pause_save,
                          cancelled=lambda: backup.saver is not None
                          and backup.saver.cancelled).install()
    try:
        kerasbackup.fit(model, x, y, batch_size=8, epochs=args.epochs,
                        callbacks=[Pace()] + siblings + [backup],
                        validation_split=0.2, shuffle=True, verbose=0)
    except BaseException as e:
        if args.result:
            info = {"type": type(e).__name__, "message": str(e),
                    "mro": [c.__name__ for c in type(e).__mro__]}
            for key in ("backup_dir", "signal_name", "epoch", "batch", "seconds"):
                if hasattr(e, key):
                    info[key] = getattr(e, key)
            with open(args.result, "w") as f:
                json.dump(info, f)
        raise
    ht.snapshot_to_npz(ht.snapshot(model, siblings), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
