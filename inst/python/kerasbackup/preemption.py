"""Signal handling for preemption: flag on the first signal, abort on the second.

The handler only records the signal; the callback checks the flag after each
batch, saves, and stops. Handlers installed before (Python's or the host's,
e.g. R's C handler for SIGUSR1) are put back exactly at train end: C-level
handlers are saved and restored with sigaction(2), which Python's
`signal.signal()` cannot express.
"""

import ctypes
import ctypes.util
import os
import signal
import threading
import time

_UNCATCHABLE = {"SIGKILL", "SIGSTOP"}
# struct sigaction is 152 bytes on Linux x86_64/aarch64; leave room.
_SIGACTION_SIZE = 512


def signal_numbers(names):
    """Maps signal names to numbers; raises ValueError for bad names."""
    if isinstance(names, str):
        names = [names]
    numbers = []
    for name in names:
        sig = getattr(signal.Signals, str(name), None) if isinstance(name, str) else None
        if sig is None or name in _UNCATCHABLE:
            raise ValueError(
                "Invalid value for argument `preemption_signals`. Expected "
                "names of catchable signals such as 'SIGTERM', 'SIGUSR1', "
                f"'SIGINT'. Received: {name!r}"
            )
        numbers.append(int(sig))
    if not numbers:
        raise ValueError(
            "Invalid value for argument `preemption_signals`. Expected at "
            "least one signal name. Received an empty list."
        )
    return numbers


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


class PreemptionAbort(KeyboardInterrupt):
    """A second preemption signal: stop at once, without saving."""


class PreemptionWatcher:
    """Installs handlers for the given signals and records the first one."""

    def __init__(self, names):
        self.signals = signal_numbers(names)
        self.requested_at = None
        self.requested_name = None
        self._saved = {}
        self._libc = _libc()

    @property
    def requested(self):
        return self.requested_at is not None

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "save_before_preemption=True needs fit() to run on the main "
                "thread: signal handlers can only be installed there."
            )
        for sig in self.signals:
            raw = self._raw_get(sig)
            previous = signal.signal(sig, self._handle)
            self._saved[sig] = (previous, raw)

    def restore(self):
        for sig, (previous, raw) in self._saved.items():
            if previous is not None:
                signal.signal(sig, previous)
            elif raw is not None:
                # Installed outside Python (e.g. by R): put the C handler back.
                signal.signal(sig, signal.SIG_DFL)
                self._libc.sigaction(sig, raw, None)
        self._saved = {}

    def _raw_get(self, sig):
        if self._libc is None:
            return None
        buf = ctypes.create_string_buffer(_SIGACTION_SIZE)
        if self._libc.sigaction(sig, None, buf) != 0:
            return None
        return buf

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested:
            # Second signal: give up at once. Stores publish atomically, so
            # the previous checkpoint stays intact.
            self.restore()
            raise PreemptionAbort(
                f"{name} received twice: stopping at once without saving."
            )
        self.requested_at = time.monotonic()
        self.requested_name = name
        previous = self._saved.get(signum, (None, None))[0]
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)

    def trigger(self, signum=signal.SIGTERM):
        """Acts as if `signum` arrived (for tests and manual preemption)."""
        os.kill(os.getpid(), signum)
