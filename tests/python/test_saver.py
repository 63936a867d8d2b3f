"""The asynchronous saver on its own: one write at a time, errors raised on
the training thread, and a wait interrupted by a signal that cancels the
write yet still knows it is running."""

import gc
import os
import select
import signal
import threading
import zlib

import numpy as np
import pytest

from kerasbackup.saver import AsyncSaver, release_host_buffers
from kerasbackup.store import BackupWriteError, SaveCancelled
from kerasbackup.store.fileio import crc32_combine


def _blocking_write(started, release, log, threads=None):
    def write(cancel):
        if threads is not None:
            threads.append(threading.current_thread())
        started.set()
        assert release.wait(120)
        if cancel.is_set():
            log.append("cancelled")
            raise SaveCancelled("cancelled")
        log.append("written")
        return {"path": "p"}
    return write


def test_one_write_at_a_time_and_errors_surface_on_the_caller():
    saver = AsyncSaver()
    started, release, log = threading.Event(), threading.Event(), []
    saver.submit(_blocking_write(started, release, log))
    assert started.wait(120) and saver.in_flight
    # The next submit waits for the first write.
    second = threading.Thread(target=saver.submit,
                              args=(lambda cancel: log.append("second") or {},))
    second.start()
    release.set()
    second.join(120)
    saver.wait_until_finished()
    assert log == ["written", "second"] and saver.completed == 2

    def failing(cancel):
        raise BackupWriteError("disk full")

    saver.submit(failing)
    saver.wait_until_finished()
    with pytest.raises(BackupWriteError, match="disk full"):
        saver.check_for_errors()
    saver.check_for_errors()  # raised once


def _writer_thread(cancel):
    return {"thread": threading.current_thread()}


def test_one_thread_runs_a_savers_writes_and_ends_with_it():
    saver = AsyncSaver()
    threads = []
    for _ in range(3):
        saver.submit(_writer_thread)
        saver.wait_until_finished()
        threads.append(saver.last_info["thread"])
    first = threads[0]
    assert first is not threading.current_thread() and first.name == "kerasbackup-save"
    assert threads == [first] * 3 and first.is_alive()
    saver.close()
    first.join(120)  # a hang guard: close() ends the thread at once
    assert not first.is_alive()

    # Dropped without close(), a saver still ends its thread.
    saver = AsyncSaver()
    saver.submit(_writer_thread)
    saver.wait_until_finished()
    thread = saver.last_info["thread"]
    del saver
    gc.collect()
    thread.join(120)
    assert not thread.is_alive()


def _answer_from_child(check):
    """Runs `check()` (which returns bytes) in a forked child; returns its answer.

    A hang guard, not a timing: the child answers as soon as it is done; one
    that has not answered in 120 s is killed (b"no answer").
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, check())
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 120)
        answer = os.read(read, 200) if ready else b"no answer"
        if not ready:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    return answer


def test_a_forked_child_writes_on_a_thread_of_its_own():
    saver = AsyncSaver()
    saver.submit(_writer_thread)
    saver.wait_until_finished()
    parent_thread = saver.last_info["thread"]

    def check():  # the parent's writing thread does not exist here
        saver.submit(_writer_thread)
        saver.wait_until_finished()
        saver.check_for_errors()
        return b"new thread" if saver.last_info["thread"] is not parent_thread else b"same thread"

    try:
        answer = _answer_from_child(check)
    finally:
        saver.close()
    assert answer == b"new thread"


def test_a_child_forked_during_a_write_neither_waits_for_it_nor_repeats_it():
    # The write runs in the parent only: the child has no thread to finish it.
    saver = AsyncSaver()
    started, release, log = threading.Event(), threading.Event(), []
    saver.submit(_blocking_write(started, release, log))
    assert started.wait(120) and saver.in_flight

    def check():
        idle = not saver.in_flight
        saver.wait_until_finished()
        saver.submit(_writer_thread)  # waits for no write before its own
        saver.wait_until_finished()
        saver.check_for_errors()
        saver.close()
        ok = idle and saver.completed == 1 and log == []
        return b"own write only" if ok else repr((idle, saver.completed, log)).encode()

    try:
        answer = _answer_from_child(check)
    finally:
        release.set()
        saver.close()
    assert answer == b"own write only"
    assert log == ["written"] and saver.completed == 1  # the parent's write ended


def test_sync_saver_raises_at_once():
    saver = AsyncSaver(asynchronous=False)
    assert saver.host_buffers is None

    def failing(cancel):
        raise BackupWriteError("read-only file system")

    with pytest.raises(BackupWriteError):
        saver.submit(failing)


@pytest.mark.parametrize("call", ["wait_until_finished", "close"])
def test_an_interrupted_wait_cancels_the_write_and_still_waits_for_it(call):
    release_host_buffers()
    saver = AsyncSaver()
    buffers = saver.host_buffers
    started, release, log, threads = threading.Event(), threading.Event(), [], []
    saver.submit(_blocking_write(started, release, log, threads))
    assert started.wait(120)

    armed, raised = threading.Event(), threading.Event()

    def interrupt(signum, frame):
        if armed.is_set() and not raised.is_set():
            raised.set()
            raise KeyboardInterrupt("second signal")

    def send_until_handled():
        # Signals that land before the wait began are ignored: send again
        # until the handler has raised inside it.
        while not raised.is_set():
            os.kill(os.getpid(), signal.SIGUSR1)
            raised.wait(0.01)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        threading.Thread(target=send_until_handled, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            armed.set()
            getattr(saver, call)()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    # The write still runs (a join interrupted this way could have marked
    # the thread as stopped) and was told not to publish.
    assert saver.in_flight and saver.cancelled
    release.set()
    saver.wait_until_finished()
    assert log == ["cancelled"] and not saver.in_flight and saver.completed == 0
    # A close() cut short leaves its buffers out of the pool: the write it
    # stopped waiting for could still have been reading them.
    saver.close()
    assert (AsyncSaver().host_buffers is buffers) == (call == "wait_until_finished")
    # The writing thread ended with the write, the saver still referenced.
    threads[0].join(120)  # a hang guard
    assert not threads[0].is_alive()


class _CudaBuffer:
    is_cuda = True


def test_host_buffers_outlive_the_saver_and_hold_one_state():
    release_host_buffers()
    first = AsyncSaver()
    buffers = first.host_buffers
    x, y = np.zeros(3), np.ones(2)
    # A capture stores buffers (or looks them up), then the write runs.
    buffers["x"], buffers["y"], buffers["gpu"] = x, y, _CudaBuffer()
    first.submit(lambda cancel: {})
    first.wait_until_finished()
    assert set(buffers) == {"x", "y", "gpu"}
    # The next capture uses "x" and "gpu" only: after its write "y" is freed.
    assert buffers.get("x") is x and buffers.get("gpu") is not None
    first.submit(lambda cancel: {})
    first.wait_until_finished()
    assert set(buffers) == {"x", "gpu"}
    first.close()
    # The next saver (the next fit()) gets the host buffers, not the device ones.
    second = AsyncSaver()
    assert second.host_buffers is buffers and set(buffers) == {"x"} and buffers["x"] is x
    # A saver opened meanwhile gets buffers of its own: never shared.
    third = AsyncSaver()
    own = third.host_buffers
    assert own is not buffers and not own
    second.close()
    third.close()  # the pool keeps one set: the last one closed
    assert AsyncSaver().host_buffers is own
    release_host_buffers()
    assert not AsyncSaver().host_buffers


def _pairs(buffers, values, read):
    first = next(iter(values))
    for name, value in values.items():
        if read:
            # Read as its copy is due, not all up front: the caller copied
            # the first (small) value itself before asking for the next.
            assert buffers[first].tobytes() == values[first].tobytes()
        read.append(name)
        yield buffers[name], value


class _RecordingNumpy:
    """numpy, with copyto() recording the names of the threads that call it."""

    def __init__(self):
        self.threads = []

    def __getattr__(self, name):
        return getattr(np, name)

    def copyto(self, dst, src):
        self.threads.append(threading.current_thread().name)
        np.copyto(dst, src)


@pytest.mark.parametrize("threshold", [1 << 60, 0], ids=["one thread", "two threads"])
def test_host_buffers_fill_copies_every_value_exactly(monkeypatch, threshold):
    import kerasbackup.saver as saver

    monkeypatch.setattr(saver, "PARALLEL_COPY_BYTES", threshold)
    monkeypatch.setattr(saver, "COPY_PIECE_BYTES", 4096)  # big arrays go in pieces
    recording = _RecordingNumpy()
    monkeypatch.setattr(saver, "np", recording)
    rng = np.random.default_rng(7)  # fixed: the values only need to differ
    values = {f"v{i}": rng.standard_normal(n).astype(dtype)
              for i, (n, dtype) in enumerate([(3, np.float64), (5000, np.float32),
                                              (70000, np.float32), (1, np.int64),
                                              (40000, np.float16), (0, np.float32)])}
    values["v6"] = rng.standard_normal((300, 40)).astype(np.float32)[:, ::2]  # strided
    buffers = saver.HostBuffers()
    bufs = buffers.reserve([(name, v.shape, v.dtype) for name, v in values.items()])
    read = []
    crcs = [] if crc32_combine is not None else None  # without isal: no crcs
    helped = buffers.fill(_pairs(buffers, values, read), sum(b.nbytes for b in bufs), crcs)
    assert read == list(values)
    for name, value in values.items():
        assert buffers[name].dtype == value.dtype
        assert buffers[name].tobytes() == value.tobytes(), name
    # Each buffer's crc32, joined from its pieces' where it was cut.
    if crcs is not None:
        assert crcs == [zlib.crc32(v.tobytes()) for v in values.values()]
    by_helper = recording.threads.count("kerasbackup-copy")
    assert helped == by_helper
    if threshold:
        assert by_helper == 0 and len(recording.threads) == len(values)
    else:
        # Both threads copied, and the big arrays went in pieces.
        assert 0 < by_helper < len(recording.threads)
        assert len(recording.threads) > len(values)


def test_a_failed_copy_on_the_helper_thread_raises_on_the_caller(monkeypatch):
    import kerasbackup.saver as saver

    monkeypatch.setattr(saver, "PARALLEL_COPY_BYTES", 0)
    big, small = np.zeros(1000), np.zeros(10)
    # The first pair is copied here; the second goes to the idle helper
    # thread, where its shape does not fit the buffer.
    pairs = [(big, np.ones(1000)), (small, np.ones(11))]
    with pytest.raises(ValueError):
        saver.HostBuffers().fill(iter(pairs), 1 << 20)
    assert big.sum() == 1000


def test_an_interrupted_fill_returns_only_once_the_helper_is_done(monkeypatch):
    """The next save reuses the buffers: no copy may still run into them."""
    import kerasbackup.saver as saver

    monkeypatch.setattr(saver, "PARALLEL_COPY_BYTES", 0)
    first, second = np.zeros(10), np.zeros(10)
    started, gate = threading.Event(), threading.Event()

    def pairs():
        yield first, np.ones(10)
        yield second, np.full(10, 2.0)  # handed to the idle helper
        assert started.wait(120)  # the helper is copying it now (bounds a broken fill)
        gate.set()
        raise KeyboardInterrupt  # e.g. Ctrl-C while the next value is read

    recording = _RecordingNumpy()

    def copyto(dst, src):
        if dst is second:
            started.set()
            gate.wait()
        np.copyto(dst, src)

    recording.copyto = copyto
    monkeypatch.setattr(saver, "np", recording)
    with pytest.raises(KeyboardInterrupt):
        saver.HostBuffers().fill(pairs(), 1 << 20)
    assert (first == 1).all() and (second == 2).all()
