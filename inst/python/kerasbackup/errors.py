"""Every error and warning class of kerasbackup, in one place.

Imports nothing but the standard library (not even numpy), so the store's
helper processes and R can load it fast. R maps the class names to its
condition classes in R/conditions.R.

Every warning of the package goes through `warn()`, so that a front end can
take it over with `set_warning_sink()` (R signals it as an R warning, and
Python prints nothing).
"""

import collections
import threading
import warnings


# ------------------------------------------------------------- the store


class BackupError(Exception):
    """Base class of all store errors.

    Attributes:
        backup_dir: the backup directory the error is about.
    """

    def __init__(self, message, backup_dir=None):
        super().__init__(message)
        self.backup_dir = None if backup_dir is None else str(backup_dir)


class NoCheckpointError(BackupError):
    """`load(required=True)` found no checkpoint at all."""


class CorruptCheckpointError(BackupError):
    """No checkpoint in the directory passed verification.

    Attributes:
        problems: list of dicts `{checkpoint, file, kind, detail}`; `kind` is
            one of "missing", "truncated", "size mismatch", "checksum
            mismatch", "unknown format version N", "manifest unreadable",
            "not a regular file" (a symlink, FIFO, device or directory in
            place of a file), "unreadable" (an I/O error other than a missing
            file) and "invalid content" (a manifest or array table that is
            malformed or inconsistent with the data file).
    """

    def __init__(self, message, backup_dir=None, problems=()):
        super().__init__(message, backup_dir)
        self.problems = list(problems)


class BackupDirError(BackupError):
    """backup_dir cannot be used.

    It is not a directory, holds content kerasbackup did not write, is owned
    by another user or writable by others without the sticky bit, or an OS
    call on it failed.

    Attributes:
        os_error: the underlying OSError, or None.
    """

    def __init__(self, message, backup_dir=None, os_error=None):
        super().__init__(message, backup_dir)
        self.os_error = os_error


class BackupLockedError(BackupError):
    """backup_dir's lock is held by someone else, or was lost.

    Raised when another live process or store object holds the lock, and
    when a store finds that its lock no longer guards backup_dir (`.lock` or
    backup_dir itself was removed or replaced while it was open): another
    process may hold the new lock, so nothing more is written.

    Attributes:
        holder: dict `{pid, host, started}` read from the lock file (values
            may be None if the holder had not recorded itself yet).
    """

    def __init__(self, message, backup_dir=None, holder=None):
        super().__init__(message, backup_dir)
        self.holder = dict(holder or {})


class BackupWriteError(BackupError):
    """Writing to backup_dir failed; the previous checkpoint is untouched.

    Attributes:
        os_error: the underlying OSError.
    """

    def __init__(self, message, backup_dir=None, os_error=None):
        super().__init__(message, backup_dir)
        self.os_error = os_error


class SaveCancelled(Exception):
    """save() was cancelled before publishing; nothing was changed."""


class CheckpointFallbackWarning(UserWarning):
    """The newest checkpoint failed verification; an older one was loaded."""


class StaleLockWarning(UserWarning):
    """The lock file named a dead process on this host; the lock was taken over."""


# ------------------------------------------------ the callback and driver


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


class InexactResumeWarning(ResumeWarning):
    """A plain model.fit() resumed inside an epoch, but not in the same data order.

    The input cannot be rewound to the interrupted epoch's order (a tf.data
    dataset, a generator, a PyDataset, arrays shuffled by TensorFlow
    without a global seed, ...): the batches already done in that epoch
    were drawn again from it and skipped, and the epoch goes on in whatever
    order the input gives now. The message names the input and what would
    make the resume exact.
    """


class SaveErrorWarning(UserWarning):
    """A save failed and training went on (`on_save_error="warn"`).

    The previous checkpoint is kept.
    """


class CallbackStateError(TypeError):
    """A callback's `get_state()` gave a value that a checkpoint cannot hold.

    Attributes:
        callback: the callback's class name.
        position: its position in fit()'s callbacks.
        key: the state's entry that holds the value.
    """

    def __init__(self, callback, position, key, where, value):
        self.callback, self.position, self.key = callback, position, key
        super().__init__(
            f"Callback {callback} (position {position} in callbacks) cannot be "
            f"backed up: in what its get_state() returned, {where} is "
            f"{type(value).__name__} {value!r:.60}. A saved state holds None, "
            "booleans, numbers, strings, lists, dicts with string keys and "
            "numpy arrays.")


class UnbuiltStateError(ValueError):
    """Part of the training state does not exist yet when training starts.

    A layer or an optimizer that creates its variables at its first call,
    inside the train step, has nothing a checkpoint could be restored into
    before that step runs. The message names what is unbuilt and how to
    build it before fit().
    """


# ------------------------------------------------ several workers


class PeerLostError(RuntimeError):
    """Another worker of a distributed fit() died or stopped answering.

    Raised when one of our own agreements (broadcast, barrier, stop
    agreement) gets no answer within its bound, and in place of the
    engines' own errors for a lost peer (a TF collective that is
    unavailable or timed out, a failed gloo all-reduce in a JAX step).

    Attributes:
        rank: this worker's rank.
        timeout: the bound in seconds, or None when the engine noticed.
    """

    def __init__(self, message, rank=None, timeout=None):
        super().__init__(message)
        self.rank = rank
        self.timeout = timeout


class ResumeMismatchError(RuntimeError):
    """A worker cannot restore the checkpoint the chief resumes from.

    Every worker must read the chief's checkpoint from the same backup_dir
    (a shared file system); a worker that sees another checkpoint, or none,
    stops all of them before training starts.
    """


# The package's warnings, each of which R signals with a class of its own.
WARNING_CLASSES = (CheckpointFallbackWarning, StaleLockWarning, ResumeWarning,
                   InexactResumeWarning, SaveErrorWarning)


# ------------------------------------------------ where warnings go

_sink = None
# Warnings of background threads (saver, lease renewal, pruning) while a
# sink is set: delivered on the main thread by the next flush_warnings().
_queued = collections.deque()


def set_warning_sink(fn):
    """Routes the package's warnings to `fn` (None: back to `warnings.warn`).

    `fn(classes, message)` is called on the main thread only, with
    `classes` the names of the warning's class and its bases up to
    `Warning` (e.g. `["InexactResumeWarning", "ResumeWarning",
    "UserWarning", "Warning"]`) and `message` a string. It returns True
    when it handled the warning; anything else (False, None) passes the
    warning on to `warnings.warn()`. What `fn` raises reaches the code that
    warned (R's `options(warn = 2)`). Returns the previous sink.
    """
    global _sink
    if fn is not None and not callable(fn):
        raise TypeError(f"set_warning_sink() takes a function or None, not "
                        f"{type(fn).__name__}")
    previous, _sink = _sink, fn
    return previous


def warning_class_names(category):
    """`category`'s class name and those of its bases, up to `Warning`."""
    names = []
    for cls in category.__mro__:
        names.append(cls.__name__)
        if cls is Warning:
            break
    return names


def _on_main_thread():
    return threading.current_thread() is threading.main_thread()


def _handled(result):
    return result is True or (type(result).__name__ == "bool_" and bool(result))


def _deliver(message, category, stacklevel):
    sink = _sink
    if sink is not None and _handled(sink(warning_class_names(category), message)):
        return
    warnings.warn(message, category, stacklevel=stacklevel + 1)


def warn(message, category=UserWarning, stacklevel=1):
    """Warns through the sink (see `set_warning_sink()`) or `warnings.warn`.

    On the main thread the sink is called at once (after any warnings
    queued by background threads). On another thread, with a sink set, the
    warning is queued for the main thread's next `flush_warnings()`;
    without a sink it goes to `warnings.warn()` there and then.
    `stacklevel` counts as `warnings.warn`'s does, from the caller of warn().
    """
    message = str(message)
    if not _on_main_thread():
        if _sink is not None:
            _queued.append((message, category))
        else:
            warnings.warn(message, category, stacklevel=stacklevel + 1)
        return
    flush_warnings()
    _deliver(message, category, stacklevel + 1)


def flush_warnings():
    """Delivers the warnings queued by background threads; call it on the main thread.

    Returns how many were delivered (0 on another thread, which delivers
    nothing).
    """
    if not _queued or not _on_main_thread():
        return 0
    count = 0
    while True:
        try:
            message, category = _queued.popleft()
        except IndexError:
            return count
        count += 1
        _deliver(message, category, 2)
