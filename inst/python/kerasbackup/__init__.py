"""kerasbackup: crash-proof, exactly resumable Keras training."""

__version__ = "0.1.0"

from kerasbackup.callback import BackupAndRestore  # noqa: E402
from kerasbackup.errors import (  # noqa: E402
    FingerprintMismatchError,
    PreemptedError,
    ResumeWarning,
)
from kerasbackup.preemption import PreemptionAbort  # noqa: E402
from kerasbackup.store import (  # noqa: E402
    BackupDirError,
    BackupError,
    BackupLockedError,
    BackupWriteError,
    CheckpointStore,
    CorruptCheckpointError,
    NoCheckpointError,
    backup_info,
)
from kerasbackup.training import fit  # noqa: E402
