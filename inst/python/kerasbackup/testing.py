"""Helpers for tests and the benchmark: hold a save at a chosen phase.

Tests that need a signal to land while a checkpoint is being written wait
for a state instead of sleeping: the save announces itself with a marker
file and waits until the test releases it. Built on the store's public
phase hook (`kerasbackup.store.set_phase_hook`).
"""

import os
import time

from kerasbackup.store import set_phase_hook


class PauseSave:
    """A phase hook that holds chosen saves at `phase` until released.

    When save number `n` (counted from 1 by its "staging" phase, in this
    process, from `install()`) reaches `phase`, the hook writes `marker`
    (the save number and the pid), then waits until the file `release`
    exists or `cancelled()` returns true; it removes `marker` before the
    save goes on.

    Args:
        marker: path of the file announcing the held save.
        release: path of the file that lets it go on (created by the test);
            "{n}" in it stands for the save number, to release saves one by one.
        saves: save numbers to hold (default: all).
        phase: a phase of `set_phase_hook` (default "arrays_written": the
            data is written, nothing is published yet).
        cancelled: optional callable; the hold also ends when it returns
            true (e.g. `lambda: callback.saver.cancelled`).
        action: optional callable run when a save is held, before waiting
            (e.g. send a signal).
    """

    def __init__(self, marker, release, saves=None, phase="arrays_written",
                 cancelled=None, action=None, poll_seconds=0.005):
        self.marker = os.fspath(marker)
        self.release = os.fspath(release)
        self.saves = None if saves is None else {int(s) for s in saves}
        self.phase = phase
        self.cancelled = cancelled
        self.action = action
        self.poll_seconds = poll_seconds
        self.count = 0
        self.held = []
        self._previous = None

    def install(self):
        self.count = 0
        self._previous = set_phase_hook(self)
        return self

    def uninstall(self):
        set_phase_hook(self._previous)

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.uninstall()
        return False

    def __call__(self, phase, info):
        if phase == "staging":
            self.count += 1
        if phase != self.phase or (self.saves is not None and self.count not in self.saves):
            return
        self.held.append(self.count)
        tmp = self.marker + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{self.count} {os.getpid()}\n")
        os.replace(tmp, self.marker)  # appears complete, or not at all
        try:
            if self.action is not None:
                self.action()
            release = self.release.replace("{n}", str(self.count))
            while not os.path.exists(release):
                if self.cancelled is not None and self.cancelled():
                    break
                time.sleep(self.poll_seconds)
        finally:
            try:
                os.unlink(self.marker)
            except FileNotFoundError:
                pass
