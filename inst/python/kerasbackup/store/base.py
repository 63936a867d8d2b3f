"""What every back end's store offers the callback, and the parts they share.

A store owns one backup_dir exclusively while it is open (a lock for a
local directory, a lease for an object store) and offers: `open()`,
`close()`, `is_open`, `save(arrays, meta, epoch, batch, cancel=None,
checksums=None)`, `load(required=False, accept=None)`,
`checkpoints(verify=True)`, `latest` and `delete()`; see
local.CheckpointStore for what each promises.
"""


class Store:
    """Base of the back ends' stores: context manager, `latest`, close on collection."""

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        # An unclosed store would keep backup_dir until the process exits
        # (a lock) or until its lease expires.
        try:
            self.close()
        except Exception:
            pass

    @property
    def latest(self):
        """Info dict of the newest checkpoint (checksums not re-read), or None."""
        found = self.checkpoints(verify=False)
        return found[-1] if found else None
