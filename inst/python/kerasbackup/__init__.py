"""kerasbackup: crash-proof, exactly resumable Keras training.

Names are imported lazily, so `import kerasbackup.store` (used by helper
processes and by `backup_info()`) does not pull in Keras and TensorFlow.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "BackupAndRestore": "kerasbackup.callback",
    "fit": "kerasbackup.training",
    "CallbackStateError": "kerasbackup.errors",
    "FingerprintMismatchError": "kerasbackup.errors",
    "PreemptedError": "kerasbackup.errors",
    "ResumeWarning": "kerasbackup.errors",
    "InexactResumeWarning": "kerasbackup.errors",
    "set_warning_sink": "kerasbackup.errors",
    "SaveErrorWarning": "kerasbackup.errors",
    "DriverRun": "kerasbackup.callback",
    "TrainingState": "kerasbackup.state",
    "AsyncSaver": "kerasbackup.saver",
    "release_host_buffers": "kerasbackup.saver",
    "SavePolicy": "kerasbackup.policy",
    "PreemptionAbort": "kerasbackup.preemption",
    "BackupDirError": "kerasbackup.store",
    "BackupError": "kerasbackup.store",
    "BackupLockedError": "kerasbackup.store",
    "BackupWriteError": "kerasbackup.store",
    "CheckpointFallbackWarning": "kerasbackup.store",
    "StaleLockWarning": "kerasbackup.store",
    "CheckpointStore": "kerasbackup.store",
    "ObjectCheckpointStore": "kerasbackup.store",
    "open_store": "kerasbackup.store",
    "CorruptCheckpointError": "kerasbackup.store",
    "NoCheckpointError": "kerasbackup.store",
    "backup_info": "kerasbackup.store",
    "initialize_jax": "kerasbackup.cluster_start",
    "PeerLostError": "kerasbackup.errors",
    "ResumeMismatchError": "kerasbackup.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kerasbackup' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
