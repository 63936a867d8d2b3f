"""The asynchronous saver on its own: one write at a time, errors raised on
the training thread, and a wait interrupted by a signal that cancels the
write yet still knows it is running."""

import os
import signal
import threading

import pytest

from kerasbackup.saver import AsyncSaver
from kerasbackup.store import BackupWriteError, SaveCancelled


def _blocking_write(started, release, log):
    def write(cancel):
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


def test_sync_saver_raises_at_once():
    saver = AsyncSaver(asynchronous=False)
    assert saver.host_buffers is None

    def failing(cancel):
        raise BackupWriteError("read-only file system")

    with pytest.raises(BackupWriteError):
        saver.submit(failing)


def test_an_interrupted_wait_cancels_the_write_and_still_waits_for_it():
    saver = AsyncSaver()
    started, release, log = threading.Event(), threading.Event(), []
    saver.submit(_blocking_write(started, release, log))
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
            saver.wait_until_finished()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    # The write still runs (a join interrupted this way could have marked
    # the thread as stopped) and was told not to publish.
    assert saver.in_flight and saver.cancelled
    release.set()
    saver.wait_until_finished()
    assert log == ["cancelled"] and not saver.in_flight and saver.completed == 0
