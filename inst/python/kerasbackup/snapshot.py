"""Copies of the variables for a background save: on the device now, to host later.

An asynchronous save must capture the training state before the next step
changes it, and training waits only for that capture. On JAX and torch the
capture is a copy made on the variables' own device, which is much faster
than a copy to host memory on an accelerator; the copy to host memory then
happens on the saver's thread, while training goes on:

- JAX: one jitted copy of all the arrays, dispatched asynchronously and
  ordered before the next (donating) step by JAX itself; the saver thread's
  `np.asarray()` waits for it and brings it to host memory.
- torch: `copy_()` into a device buffer reused from one save to the next,
  then an event recorded on the current stream. On a GPU the saver thread
  waits for that event on a side stream of its own and copies into reused
  pinned host buffers; on the CPU the device buffer already is host memory.

TensorFlow variables are read as before (state.capture_variables): a read
tensor keeps its value while the variable is updated.
"""

import numpy as np

import keras


class DeviceSnapshot:
    """Device copies of some variables; `to_host()` brings them to host memory.

    Args:
        buffers: a dict kept from one snapshot to the next (the saver's):
            device and host buffers are reused from it. Only one snapshot
            per dict may be in flight.
    """

    def __init__(self, buffers):
        self.backend = keras.backend.backend()
        self.buffers = buffers
        self.copies = {}
        self.events = []

    def add(self, name, variable):
        """Copies `variable`'s value on its device; returns its (shape, dtype) for the table."""
        value = variable.value
        if self.backend == "jax":
            self.copies[name] = value  # copied all at once by seal()
        elif self.backend == "torch":
            self.copies[name] = self._torch_copy(name, value)
        else:
            raise NotImplementedError(f"no device snapshot on {self.backend!r}")
        dtype = keras.backend.standardize_dtype(variable.dtype)
        return tuple(variable.shape), dtype

    def _torch_copy(self, name, value):
        import torch

        value = value.detach()
        key = ("device", name)
        buf = self.buffers.get(key)
        if (buf is None or buf.shape != value.shape or buf.dtype != value.dtype
                or buf.device != value.device):
            buf = self.buffers[key] = torch.empty_like(value, memory_format=torch.contiguous_format)
        buf.copy_(value)
        return buf

    def seal(self):
        """Ends the capture (training thread): the copies are queued on the device.

        JAX: one compiled copy of every array (a single dispatch; compiled at
        the first save for these shapes). torch: an event after the copies on
        each device's current stream, for the saver thread to wait on.
        """
        if self.backend == "jax":
            names = list(self.copies)
            copied = _jax_copy_all()([self.copies[n] for n in names])
            self.copies = dict(zip(names, copied))
            return
        import torch

        devices = {t.device for t in self.copies.values() if t.is_cuda}
        for device in devices:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(device))
            self.events.append((device, event))

    def to_host(self):
        """The copies as host numpy arrays, by name (saver thread); frees the device copies."""
        if self.backend == "jax":
            host = {name: np.asarray(copy) for name, copy in self.copies.items()}
        else:
            host = self._torch_to_host()
        self.copies = {}
        self.events = []
        return host

    def _torch_to_host(self):
        import torch

        streams = {}
        for device, event in self.events:
            stream = streams[device] = torch.cuda.Stream(device=device)
            stream.wait_event(event)
        host = {}
        for name, copy in self.copies.items():
            if copy.is_cuda:
                key = ("host", name)
                buf = self.buffers.get(key)
                if buf is None or buf.shape != copy.shape or buf.dtype != copy.dtype:
                    buf = self.buffers[key] = torch.empty(
                        copy.shape, dtype=copy.dtype, pin_memory=True)
                with torch.cuda.stream(streams[copy.device]):
                    buf.copy_(copy, non_blocking=True)
                copy = buf
            host[name] = copy
        for stream in streams.values():
            stream.synchronize()
        return {name: _torch_numpy(t) for name, t in host.items()}


_JAX_COPY = []


def _jax_copy_all():
    """A jitted copy of a list of arrays: new buffers, never the inputs'."""
    if not _JAX_COPY:
        import jax
        import jax.numpy as jnp

        _JAX_COPY.append(jax.jit(lambda arrays: [jnp.copy(a) for a in arrays]))
    return _JAX_COPY[0]


def _torch_numpy(tensor):
    """A CPU tensor's memory as a numpy array of the matching dtype (bfloat16 too)."""
    dtype = np.dtype(keras.backend.standardize_dtype(tensor.dtype))
    flat = tensor.reshape(-1)
    import torch

    return flat.view(torch.uint8).numpy().view(dtype).reshape(tuple(tensor.shape))


def supported():
    """Whether this backend captures asynchronous saves on the device."""
    return keras.backend.backend() in ("jax", "torch")
