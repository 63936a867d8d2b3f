"""The phase hook: lets tests and the benchmark observe or disturb each step.

Both back ends announce the steps of a save and a delete here, so a test
can block at a step (waiting on a pipe or a marker file), send a signal, or
raise an OSError to simulate a failing disk or network, without patching
private names.
"""

# The local store's steps, in order.
PHASES = ("staging", "arrays_chunk", "arrays_written", "manifest_written",
          "published", "pruned", "deleting", "deleted", "freed")
# The object store's: "part_uploaded" in place of "arrays_chunk", and its lease.
OBJECT_PHASES = ("staging", "part_uploaded", "arrays_written", "manifest_written",
                 "published", "pruned", "deleting", "deleted",
                 "lease_waiting", "lease_acquired", "lease_renewed", "lease_lost")

_phase_hook = None


def set_phase_hook(hook):
    """Installs `hook(phase, info)`, called at each step of a save or delete.

    Local store phases, in order: "staging" (staging dir created),
    "arrays_chunk" (after each chunk of arrays.bin is written; info has
    `written` and `total`), "arrays_written" (arrays.bin fsynced),
    "manifest_written" (the staging directory is complete and synced, just
    before publishing), "published" (renamed and the directory synced),
    "pruned"; and for delete(): "deleting" (before anything is removed),
    "deleted" (all removed, backup_dir too if that left it empty), then
    "freed" (the space of the deleted big files was given back; it comes
    last also when a delete that began failed).

    The object store (URLs) announces the same steps, with "part_uploaded"
    (after each part of arrays.bin is uploaded; info has `part`, `parts`,
    `written` and `total`) in place of "arrays_chunk"; "manifest_written"
    comes just before LATEST is moved, "published" after, and no "freed".
    Its lease adds "lease_acquired", "lease_renewed" (info has `count`) and
    "lease_lost".

    `info` always has `backup_dir`, and `path` where one is meant. The hook
    runs on the thread that writes (the background saver's, for
    asynchronous saves; the lease renewer's for "lease_renewed"; a thread
    named "kerasbackup-free" for "freed" when big files were deleted or the
    delete failed). `None` removes it. Returns the previous hook.
    """
    global _phase_hook
    previous, _phase_hook = _phase_hook, hook
    return previous


def phase(name, **info):
    hook = _phase_hook
    if hook is not None:
        hook(name, info)
