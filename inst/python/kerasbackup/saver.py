"""Runs checkpoint writes one at a time, in the background or inline.

The training thread hands over a snapshot and goes on; the write (staging,
fsync, publish) runs on a thread of its own. One write is in flight at a
time: the next one waits for it, which also makes the host buffers of the
previous snapshot free for reuse. An error in the background is kept and
raised on the training thread by `check_for_errors()`, so it surfaces at a
well-defined point (the next save or hook) and never gets lost.

The host buffers outlive the saver: `close()` hands them to a pool of one,
and the next saver of the process takes them, so that a process that calls
fit() again does not pay for fresh memory (first touches cost ~2 ms per MB
of CPU on a VM that returns freed pages to its host, on the training
thread). The pool holds at most one state's size of host memory (the
variables, optimizer slots included) between fits; `release_host_buffers()`
frees it.
"""

import functools
import mmap
import os
import queue
import threading
import weakref

import numpy as np

from kerasbackup.store import SaveCancelled
from kerasbackup.store.fileio import crc32, crc32_combine


# From this many bytes a capture's copy is split over two threads: below it,
# starting the thread costs more than it saves (12.6 MB: 2.5 -> 3.2 ms).
PARALLEL_COPY_BYTES = 32 << 20
# Big arrays are copied in pieces, so the two threads share one big array.
COPY_PIECE_BYTES = 8 << 20


class HostBuffers(dict):
    """Buffers by name (state.capture, snapshot.DeviceSnapshot fill it).

    It records the names looked up or stored; `trim()`, after a write, drops
    the buffers that write did not use (variables gone, shapes changed), so
    it never holds more than one state.
    """

    def __init__(self):
        super().__init__()
        self._used = set()
        self._layout = None  # the (name, shape, dtype) list of the block
        self._block_names = set()

    def reserve(self, layout):
        """Host arrays for `layout`, a list of `(name, shape, dtype)`.

        They lie back to back, in that order, in one page-aligned block, as
        the data file holds them: a background write can then hand the
        block to direct I/O without copying it. The block is kept while the
        layout stays the same. Returns the arrays in layout order.
        """
        layout = [(name, tuple(shape), np.dtype(dtype)) for name, shape, dtype in layout]
        if layout != self._layout:
            total = sum(_nbytes(shape, dtype) for _, shape, dtype in layout)
            memory = mmap.mmap(-1, max(total, 1), flags=mmap.MAP_PRIVATE)
            block = np.frombuffer(memory, np.uint8)
            offset = 0
            for name, shape, dtype in layout:
                n = _nbytes(shape, dtype)
                super().__setitem__(name, block[offset : offset + n].view(dtype).reshape(shape))
                offset += n
            self._layout = layout
            self._block_names = {name for name, _, _ in layout}
        self._used.update(name for name, _, _ in layout)
        return [self[name] for name, _, _ in layout]

    def fill(self, pairs, nbytes, crcs=None):
        """Copies each `(buffer, value)` pair's value into its buffer.

        `pairs` may be a generator that reads each value when asked (a
        device to host copy on a GPU): it is asked as the copies go, so host
        memory holds at most a few values besides the buffers. A big state
        (`nbytes`, the buffers' total) is copied on two threads, in pieces
        of at most COPY_PIECE_BYTES: training waits for this copy, and one
        thread cannot use the memory bandwidth that two can (np.copyto
        releases the GIL). With `crcs` (a list; needs crc32_combine), each
        buffer's crc32 is appended to it in pair order, taken from each
        piece just copied, while it is still in the cache: the writer then
        need not read the buffers again (if fill raises, `crcs` may hold
        some of them: discard it). Returns the number of pieces the helper
        thread copied (0 when the caller copied alone).
        """
        if crcs is not None and crc32_combine is None:
            raise ValueError("crcs needs crc32_combine (the isal package)")
        if nbytes < PARALLEL_COPY_BYTES:
            for buf, value in pairs:
                if crcs is None:
                    np.copyto(buf, value)
                else:
                    crcs.append(_copy_crc32(buf, value))
            return 0
        handed = queue.SimpleQueue()
        done = threading.Event()
        failed = []  # the helper's error, or None once the caller gave up
        copied = 0
        # Per piece: [pair number, crc32, bytes]; the crc32 is set by the
        # thread that copied the piece.
        pieces = []

        def copy(buf, value, k):
            if crcs is None:
                np.copyto(buf, value)
            else:
                pieces[k][1] = _copy_crc32(buf, value)

        def copy_handed():
            nonlocal copied
            try:
                while (item := handed.get()) is not None:
                    if not failed:
                        try:
                            copy(*item)
                            copied += 1
                        except BaseException as e:  # raised on the calling thread
                            failed.append(e)
            finally:
                done.set()

        # A thread per fill, not a pool: a pool's threads do not survive a
        # fork (data-loader workers), and starting one costs ~0.1 ms.
        threading.Thread(target=copy_handed, name="kerasbackup-copy", daemon=True).start()
        balance = 0  # bytes copied here minus bytes handed over
        try:
            for pair, buf, value in _pieces(pairs):
                if failed:
                    break
                pieces.append([pair, 0, buf.nbytes])
                # Handed over only while the helper has nothing waiting.
                if balance <= 0 or not handed.empty():
                    copy(buf, value, len(pieces) - 1)
                    balance += buf.nbytes
                else:
                    handed.put((buf, value, len(pieces) - 1))
                    balance -= buf.nbytes
        except BaseException:
            failed.append(None)  # the helper copies nothing more
            raise
        finally:
            handed.put(None)
            # The next save reuses these buffers: never return while the
            # helper may still write into them.
            _wait_out(done)
        if failed:
            raise failed[0]
        if crcs is not None:
            pair = -1
            for k, crc, n in pieces:  # the pieces of a pair are in order
                if k != pair:
                    crcs.append(crc)
                    pair = k
                else:
                    crcs[-1] = crc32_combine(crcs[-1], crc, n)
        return copied

    def get(self, key, default=None):
        self._used.add(key)
        return super().get(key, default)

    def __setitem__(self, key, value):
        self._used.add(key)
        super().__setitem__(key, value)

    def trim(self):
        for key in [k for k in self if k not in self._used]:
            del self[key]
            if key in self._block_names:
                self._layout, self._block_names = None, set()  # no longer whole
        self._used = set()

    def drop_device(self):
        """Frees accelerator buffers (torch CUDA tensors): host ones stay."""
        for key in [k for k, v in self.items() if getattr(v, "is_cuda", False)]:
            del self[key]


def _pieces(pairs):
    """`(pair number, buffer, value)`, big arrays cut into pieces of at most
    COPY_PIECE_BYTES."""
    for k, (buf, value) in enumerate(pairs):
        value = np.asarray(value)
        if (buf.nbytes <= COPY_PIECE_BYTES or buf.shape != value.shape
                or not (buf.flags.c_contiguous and value.flags.c_contiguous)):
            yield k, buf, value
            continue
        flat_buf, flat_value = buf.reshape(-1), value.reshape(-1)  # views
        step = max(1, COPY_PIECE_BYTES // buf.itemsize)
        for start in range(0, flat_buf.size, step):
            yield k, flat_buf[start : start + step], flat_value[start : start + step]


def _copy_crc32(buf, value):
    """Copies `value` into `buf`; returns the crc32 of `buf`'s bytes in C
    order, as the data file holds them, while they are still in the cache."""
    np.copyto(buf, value)
    return crc32(buf if buf.flags.c_contiguous else np.ascontiguousarray(buf))


def _wait_out(event):
    """Waits for `event`; an exception raised meanwhile (a signal handler's
    KeyboardInterrupt, say) is raised once it is set."""
    pending = None
    while True:
        try:
            event.wait()
            break
        except BaseException as e:
            pending = pending or e
    if pending is not None:
        raise pending


def _nbytes(shape, dtype):
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


_POOL_LOCK = threading.Lock()
_POOL = []  # at most one HostBuffers, left by a closed saver


def _take_host_buffers():
    with _POOL_LOCK:
        return _POOL.pop() if _POOL else HostBuffers()


def _give_host_buffers(buffers):
    buffers.drop_device()
    with _POOL_LOCK:
        _POOL[:] = [buffers]  # one at most: an older set is freed


def release_host_buffers():
    """Frees the host buffers that closed savers left for the next fit()."""
    with _POOL_LOCK:
        _POOL.clear()


def _serve(jobs, nice):
    """The writing thread of a saver: runs its jobs in order until None."""
    if nice is not None:
        try:  # per thread on Linux: the thread id is a process id there
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except (AttributeError, OSError):
            pass
    while (job := jobs.get()) is not None:
        job()
        del job  # an idle thread keeps no saver alive


class AsyncSaver:
    """One checkpoint write at a time.

    Args:
        asynchronous: write on a background thread (else inline).
        nice: the background thread's CPU niceness (Linux; None leaves it):
            training keeps the cores, the write takes the spare time.
        poll_seconds: the wait for a background write is cut into slices of
            this length, so that signal handlers (which Python runs only on
            the main thread, between bytecodes) run while we wait.
    """

    def __init__(self, asynchronous=True, poll_seconds=0.05, nice=10):
        self.asynchronous = bool(asynchronous)
        self.poll_seconds = poll_seconds
        self.nice = nice
        # Host copies of the variables, reused from one asynchronous save to
        # the next and from one saver to the next (a synchronous save writes
        # views and needs none).
        self.host_buffers = _take_host_buffers() if self.asynchronous else None
        self.completed = 0
        self.last_info = None
        # Set by the writing thread when it is done. Waits use this event,
        # not Thread.join(): a join interrupted by a signal handler's
        # exception can mark a thread that still runs as stopped (CPython
        # 3.11), after which nothing would wait for the write.
        self._done = None
        self._pid = None  # the process whose writing thread sets `_done`
        self._cancel = threading.Event()
        self._error = None
        # The writing thread, kept until close(): a thread start per save
        # costs the training thread ~0.5 ms (it waits until the new thread
        # runs), and a signal that cut that wait short could leave the
        # write unqueued with nothing ever setting `_done`.
        self._jobs = None
        self._thread = None
        if self.asynchronous:
            self._start_thread()

    def _start_thread(self):
        jobs = queue.SimpleQueue()
        weakref.finalize(self, jobs.put, None)  # a dropped saver stops its thread
        self._jobs = jobs
        self._thread = threading.Thread(target=_serve, args=(jobs, self.nice),
                                        name="kerasbackup-save", daemon=True)
        self._thread.start()

    def _others_write(self):
        """Whether the write in flight runs in another process: the parent
        of a child forked meanwhile (the writing thread is not forked)."""
        return self._pid != os.getpid()

    @property
    def in_flight(self):
        """Whether a background write of this process is still running."""
        return (self._done is not None and not self._others_write()
                and not self._done.is_set())

    @property
    def cancelled(self):
        """Whether the latest write was told not to publish."""
        return self._cancel.is_set()

    def submit(self, write):
        """Runs `write(cancel)`, a callable that saves and returns an info dict.

        Waits for the previous write first. `cancel` is a threading.Event
        the write checks before it publishes. A synchronous write's error is
        raised here; a background one's by the next `check_for_errors()`.
        """
        self.wait_until_finished()
        self.check_for_errors()
        self._cancel = cancel = threading.Event()
        done = threading.Event()
        if not self.asynchronous:
            self._run(write, cancel, done, None)
            self.check_for_errors()
            return
        if self._thread is None or not self._thread.is_alive():
            self._start_thread()  # closed, or a forked child: none here
        job = functools.partial(self._run, write, cancel, done, self.host_buffers)
        pid = os.getpid()
        # No call between these two: a signal handler, which runs when a
        # call returns, cannot leave `_done` set with the job unqueued.
        self._done, self._pid = done, pid
        self._jobs.put(job)

    def _run(self, write, cancel, done, buffers):
        try:
            info = write(cancel)
            self.completed += 1
            self.last_info = info
        except SaveCancelled:
            pass
        except BaseException as e:  # raised on the training thread later
            self._error = e
        finally:
            if buffers is not None:
                buffers.trim()
            done.set()

    def wait_until_finished(self):
        """Blocks until no write is in flight.

        If the wait itself is interrupted (a second preemption signal,
        Ctrl-C), the write is cancelled so that it cannot publish afterwards,
        and the interruption propagates.
        """
        done = self._done
        if done is None:
            return
        if self._others_write():
            self._done = None  # nothing here would ever set it
            return
        try:
            while not done.wait(self.poll_seconds):
                pass
        except BaseException:
            self._cancel.set()
            raise
        self._done = None

    def check_for_errors(self):
        """Raises the error of a failed write, once."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def cancel(self):
        """Tells the write in flight not to publish (it stops before the rename)."""
        self._cancel.set()

    def close(self):
        """Waits for the write in flight and hands the host buffers to the pool.

        If the wait is interrupted the write may still read them: they are
        then dropped instead. Errors stay pending for `check_for_errors()`.
        """
        buffers, self.host_buffers = self.host_buffers, None
        jobs, self._jobs, self._thread = self._jobs, None, None
        try:
            self.wait_until_finished()
        finally:
            if jobs is not None:
                jobs.put(None)  # the thread ends after the write in flight, if any
        if buffers is not None:
            _give_host_buffers(buffers)
