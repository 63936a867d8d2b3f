"""A plain `model.fit()` job with BackupAndRestore, as R's keras3 runs one.

Trains an MLP with Dropout on arrays (shuffle=True, validation_split=0.2:
64 training samples, 8 batches of 8 per epoch) with Keras' own
`model.fit()`: no kerasbackup driver. Used in-process by
test_plain_fit_resume.py and, for the kill -9 test, as a script:

    plain_fit_job.py --backup-dir D --out OUT.npz [--hold-at E,B --marker M]

With --hold-at the job stops before batch B of epoch E (0-based) once the
checkpoint of the B batches done is published, writes --marker and waits
there (forever) for the parent's kill -9. Without it, it trains to the end
and writes the final snapshot (weights, optimizer, History) to --out.
"""

import argparse
import os
import signal
import sys

import helpers_training as ht

EPOCHS = 5
BATCH_SIZE = 8


def data():
    return ht.make_data(80)


class Recorder:
    """Records the batches each training step sees and the batch hooks called."""

    def __init__(self):
        import keras

        rec = self

        class Hooks(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                rec.epoch = epoch

            def on_train_batch_begin(self, batch, logs=None):
                rec.hooks.append((rec.epoch, batch))

        self.epoch = None
        self.hooks = []
        self.callback = Hooks()


def make_model():
    return ht.make_model(seed=1, dropout=True, schedule=True)


def fit(model, callbacks, epochs=EPOCHS, **kwargs):
    x, y = data()
    return model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0,
                     shuffle=True, validation_split=0.2, callbacks=callbacks,
                     **kwargs)


def _holder(backup, epoch, batch, marker):
    import keras

    class Hold(keras.callbacks.Callback):
        """Listed after the backup: its on_train_batch_begin has taken the save."""

        def on_epoch_begin(self, e, logs=None):
            self.epoch = e

        def on_train_batch_begin(self, b, logs=None):
            if (self.epoch, b) == (epoch, batch):
                backup.saver.wait_until_finished()  # published
                with open(marker + ".tmp", "w") as f:
                    f.write(str(os.getpid()))
                os.replace(marker + ".tmp", marker)
                while True:  # parked: the parent, seeing the marker, kills it
                    signal.pause()

    return Hold()


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--backup-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--hold-at", default=None)
    p.add_argument("--marker", default=None)
    args = p.parse_args(argv)
    import kerasbackup

    model = make_model()
    backup = kerasbackup.BackupAndRestore(args.backup_dir, save_freq=1)
    callbacks = [backup]
    if args.hold_at:
        e, b = (int(v) for v in args.hold_at.split(","))
        callbacks.append(_holder(backup, e, b, args.marker))
    history = fit(model, callbacks)
    ht.snapshot_to_npz(ht.snapshot(model, history=history), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
