"""When a save falls due: every epoch, every N batches, or never.

Keras calls the batch hooks once per execution: with
`compile(steps_per_execution=k)` `on_train_batch_end(batch)` comes every k
batches, with `batch` the index of the last batch of that execution. The
policy therefore counts batches from the index, not hook calls, as Keras'
own BackupAndRestore does, so that `save_freq=N` means N batches whatever
`steps_per_execution` is. (The index of the last execution of an epoch can
run past the epoch's end: Keras does not clip it; the policy does.) A save falls due at the first hook at which N or
more batches have run since the last one; the count then starts again.
"""


class SavePolicy:
    """Counts batches and says when a save is due.

    Args:
        save_freq: `"epoch"`, a positive integer (batches), or `False`
            (never: only preemption saves).
    """

    def __init__(self, save_freq):
        self.save_freq = save_freq
        self.batches_since_save = 0
        self.batches_in_epoch = 0

    @property
    def per_batch(self):
        return type(self.save_freq) is int

    @property
    def per_epoch(self):
        return self.save_freq == "epoch"

    def start(self, batches_in_epoch=0, batches_since_save=0):
        """Starts counting, e.g. from a restored checkpoint's position."""
        self.batches_in_epoch = int(batches_in_epoch)
        self.batches_since_save = int(batches_since_save)

    def epoch_begin(self, resumed_batches=0):
        self.batches_in_epoch = int(resumed_batches)

    def batch_end(self, batch, steps=None):
        """`batch`: the 0-based index Keras passes; `steps`: batches per epoch, if known.

        Returns whether a save is due.
        """
        done = int(batch) + 1
        if steps:
            done = min(done, int(steps))
        ran = max(done - self.batches_in_epoch, 0)
        self.batches_in_epoch = done
        if not self.per_batch:
            return False
        self.batches_since_save += ran
        if self.batches_since_save >= self.save_freq:
            self.batches_since_save = 0
            return True
        return False

    def epoch_end(self):
        """Returns whether a save is due at the end of the epoch."""
        self.batches_in_epoch = 0
        return self.per_epoch
