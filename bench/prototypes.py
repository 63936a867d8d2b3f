"""Prototype replacements for `kerasbackup.state.capture_variables`, timed by bench.py.

Nothing here is used by the package. bench.py swaps these in for a few saves
to measure what the proposed changes would save (see the proposed diff in
bench/README.md).

- `capture_zero_copy`: no host copy at all. With the TensorFlow backend,
  `np.asarray(variable.read_value())` is a read-only view of the value the
  variable had at that moment: TensorFlow copies a variable's buffer before
  updating it in place while another tensor still references it
  (copy-on-write), so the view never changes. For a synchronous save that is
  all that is needed (training is blocked until the write is done); for an
  asynchronous one the copy moves into the next training step, and only for
  the variables updated while the write is in flight.
- `with_writeback`: starts the writeback of each 16 MiB chunk as soon as it
  is written (a store change). Faster for a lone big write, but slower for
  the end-of-epoch save inside fit() (0.75 s instead of 0.55 s for 25M with
  zero-copy capture): the store hashes during the final fsync, which then
  no longer hides the crc32, and the writes themselves got slower. Kept to
  show the measurement; not proposed.
- `PooledCapture`: one copy into host buffers reused from one save to the
  next (np.copyto from the zero-copy view), instead of two copies into fresh
  memory (`np.array(v.numpy(), copy=True)`), so no page is faulted in again.
"""

import numpy as np


def _groups(model, include_metrics):
    groups = [("model", list(model.variables))]
    opt = getattr(model, "optimizer", None)
    if opt is not None:
        groups.append(("optimizer", list(opt.variables)))
    if include_metrics:
        groups.append(("metrics", list(model.metrics_variables)))
    return groups


def host_view(v):
    """A read-only host array of `v`'s current value, without a copy if possible."""
    backend_var = getattr(v, "value", None)
    read = getattr(backend_var, "read_value", None)
    if read is not None:  # tf.Variable: a snapshot tensor, zero-copy on CPU
        return np.asarray(read())
    return np.array(v.numpy(), copy=True)  # other backends: a private copy


def capture_zero_copy(model, include_metrics):
    arrays, index = {}, {}
    for group, variables in _groups(model, include_metrics):
        entries = []
        for i, v in enumerate(variables):
            value = host_view(v)
            arrays[f"{group}/{i:05d}"] = value
            entries.append([v.path, list(value.shape), str(value.dtype)])
        index[group] = entries
    return arrays, index


class PooledCapture:
    """capture_variables() that copies into the buffers of the previous capture."""

    def __init__(self):
        self.pool = {}

    def __call__(self, model, include_metrics):
        arrays, index = {}, {}
        for group, variables in _groups(model, include_metrics):
            entries = []
            for i, v in enumerate(variables):
                name = f"{group}/{i:05d}"
                view = host_view(v)
                buf = self.pool.get(name)
                if buf is None or buf.shape != view.shape or buf.dtype != view.dtype:
                    buf = self.pool[name] = np.empty(view.shape, view.dtype)
                np.copyto(buf, view)
                arrays[name] = buf
                entries.append([v.path, list(view.shape), str(view.dtype)])
            index[group] = entries
        return arrays, index


def with_writeback(write_all, min_bytes=1 << 20):
    """Wraps store._write_all: after each big chunk, starts its writeback.

    On Linux, posix_fadvise(POSIX_FADV_DONTNEED) on dirty pages queues them
    for writing without waiting, so the disk works while the next chunk is
    copied and the final fsync has little left to do.
    """
    import os

    def wrapper(fd, mv):
        write_all(fd, mv)
        n = len(mv)
        if n >= min_bytes and hasattr(os, "posix_fadvise"):
            end = os.lseek(fd, 0, os.SEEK_CUR)
            os.posix_fadvise(fd, end - n, n, os.POSIX_FADV_DONTNEED)

    return wrapper
