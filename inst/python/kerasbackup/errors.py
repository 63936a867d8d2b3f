"""Errors and warnings raised by the callback and the training driver.

The store's own errors (corrupt checkpoints, locks, write failures) live in
`store.py`, which must import without Keras; these need nothing either.
"""


class FingerprintMismatchError(ValueError):
    """The checkpoint was written by a different model, optimizer or fit().

    Attributes:
        backup_dir: the backup directory.
        differences: list of `(item, old, new)` tuples.
    """

    def __init__(self, backup_dir, differences):
        self.backup_dir = str(backup_dir)
        self.differences = list(differences)
        lines = [f"  {item}: {old} -> {new}" for item, old, new in differences]
        super().__init__(
            f"The checkpoint in '{backup_dir}' was written by a different "
            "training setup, so it cannot be resumed exactly:\n"
            + "\n".join(lines)
            + "\nUse allow_changes=True (or a list of the items above) to "
            "resume anyway, or point backup_dir at a new directory."
        )


class PreemptedError(RuntimeError):
    """Training stopped after a preemption signal; the checkpoint is saved.

    Attributes:
        backup_dir, signal_name, epoch (0-based), batch (batches done in it),
        seconds (signal to published checkpoint).
    """

    def __init__(self, backup_dir, signal_name, epoch, batch, seconds):
        self.backup_dir = str(backup_dir)
        self.signal_name = signal_name
        self.epoch = epoch
        self.batch = batch
        self.seconds = seconds
        super().__init__(
            f"Training was preempted by {signal_name}. The checkpoint in "
            f"'{backup_dir}' resumes at epoch {epoch + 1}, after batch "
            f"{batch} ({seconds:.2f} s from the signal to the published "
            "checkpoint). Run the same script again to resume."
        )


class ResumeWarning(UserWarning):
    """Part of the training state could not be restored exactly."""


class SaveErrorWarning(UserWarning):
    """A save failed and training went on (`on_save_error="warn"`).

    The previous checkpoint is kept.
    """
