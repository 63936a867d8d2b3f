"""Signal handling for preemption: flag on the first signal, abort on the second.

The handler only records the signal; the callback checks the flag at its
next hook (after the current batch), saves, and stops with PreemptedError.
A second signal raises PreemptionAbort at once, wherever the main thread is
(a checkpoint being written is abandoned; the previous one stays intact).

Handlers installed before (Python's or the host's, e.g. R's C handlers for
SIGINT and SIGUSR1) are put back exactly at train end: the raw `struct
sigaction` is saved with sigaction(2) before Python's `signal.signal()`
replaces it and written back afterwards, since `signal.signal()` cannot
express a C-level handler. Prior Python-level handlers are chained: they run
after the flag is set (except `signal.default_int_handler`, whose
KeyboardInterrupt would defeat the graceful stop). C-level handlers are not
called while fit() runs (R's SIGUSR1 handler would save the workspace and
quit at once).
"""

import ctypes
import ctypes.util
import os
import signal
import threading
import time

# struct sigaction is 152 bytes on Linux x86_64/aarch64; leave room.
_SIGACTION_SIZE = 512


def _read_signal_list():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "signals.txt")
    accepted, default = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if words:
                accepted.append(words[0])
                if words[1:] == ["default"]:
                    default.append(words[0])
    return tuple(accepted), tuple(default)


#: Signal names preemption saving accepts, and those it handles by default.
ACCEPTED_SIGNALS, DEFAULT_SIGNALS = _read_signal_list()


def signal_numbers(names):
    """Maps signal names to numbers; raises ValueError for bad names."""
    if isinstance(names, str):
        names = [names]
    numbers = []
    for name in names:
        if name not in ACCEPTED_SIGNALS:
            raise ValueError(
                "Invalid value for argument `preemption_signals`. Expected "
                "names from " + ", ".join(repr(n) for n in ACCEPTED_SIGNALS)
                + f". Received: {name!r}"
            )
        numbers.append(int(getattr(signal.Signals, name)))
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


class PreemptionAbort(BaseException):
    """A second preemption signal: stop at once, without saving.

    A BaseException, so that no `except Exception` (in Keras, TensorFlow or
    user code) catches it on its way out of fit(). Not a KeyboardInterrupt:
    reticulate (>= 1.4x) turns every KeyboardInterrupt into a bare R
    interrupt, which would lose the class and the message R maps to
    `kerasbackup_preempted`.
    """


class PreemptionWatcher:
    """Installs handlers for the given signals and records the first one.

    Args:
        names: signal names (see ACCEPTED_SIGNALS).
        is_live: optional callable; `is_live()` says whether the fit() the
            handlers were installed for is still running. When it says no
            (a plain model.fit() that raised calls no hook, so the handlers
            outlived it), a signal puts the previous handlers back and is
            delivered to them.
    """

    def __init__(self, names, is_live=None):
        self.signals = signal_numbers(names)
        self.is_live = is_live
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
        self.requested_at = None
        self.requested_name = None
        try:
            for sig in self.signals:
                if sig in self._saved:
                    continue  # named twice
                raw = self._raw_get(sig)
                previous = signal.signal(sig, self._handle)
                self._saved[sig] = (previous, raw)
        except BaseException:
            self.restore()
            raise

    @property
    def installed(self):
        return bool(self._saved)

    def restore(self):
        """Puts back the handlers found by install(); idempotent."""
        saved, self._saved = self._saved, {}
        for sig, (previous, raw) in saved.items():
            # First Python's own table (signal.getsignal() answers from it),
            # then the exact C-level action. `previous` is None when the
            # handler was not installed from Python (e.g. R's): Python then
            # records SIG_DFL, and the raw action below puts the C handler
            # back. Without the raw write, a later install() would find
            # SIG_DFL and "restore" that, dropping the host's handler.
            try:
                signal.signal(sig, signal.SIG_DFL if previous is None else previous)
            except (TypeError, ValueError, OSError):
                pass
            if raw is not None:
                self._raw_set(sig, raw)

    def _raw_get(self, sig):
        if self._libc is None:
            return None
        buf = ctypes.create_string_buffer(_SIGACTION_SIZE)
        if self._libc.sigaction(sig, None, buf) != 0:
            return None
        return buf

    def _raw_set(self, sig, raw):
        if self._libc is not None:
            self._libc.sigaction(sig, raw, None)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.is_live is not None and not self.is_live():
            # A plain model.fit() that raised calls no hook, so our handlers
            # outlived it: step aside and let the signal do what it did before.
            self.restore()
            os.kill(os.getpid(), signum)
            return
        if self.requested:
            # Second signal: give up at once. Stores publish atomically, so
            # the previous checkpoint stays intact.
            first = self.requested_name
            self.restore()
            again = "again" if first == name else f"after {first}"
            raise PreemptionAbort(
                f"{name} received {again}: stopping at once, without saving. "
                "The last published checkpoint is kept."
            )
        self.requested_at = time.monotonic()
        self.requested_name = name
        previous = self._saved.get(signum, (None, None))[0]
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)

    def trigger(self, signum=signal.SIGTERM):
        """Acts as if `signum` arrived (for tests and manual preemption)."""
        os.kill(os.getpid(), signum)

