"""Exclusive ownership of an object-store backup_dir, without flock: a lease.

The lease is one object, `.lease`, created with a conditional create and
renewed by compare-and-swap from a background thread. It names its holder
(host, pid, start) and carries an expiry (`expires_at`, the holder's wall
clock plus `ttl`). A contender takes it over, with a StaleLockWarning, when
it has expired by the contender's clock or names a dead process on the
contender's own host; otherwise it gets BackupLockedError.

What it relies on: conditional writes (only one CAS wins), and clocks that
agree to well within `ttl`. The holder stops trusting its lease `margin`
seconds before it would expire, and the commit itself is fenced by the
LATEST pointer (see objstore), so even a holder that was wrongly declared
dead cannot publish after a takeover.
"""

import json
import os
import secrets
import socket
import sys
import threading
import time
import weakref
from datetime import datetime, timezone

from kerasbackup import errors
from kerasbackup.errors import BackupLockedError, StaleLockWarning
from kerasbackup.store.format import utc_now
from kerasbackup.store.lock import pid_alive
from kerasbackup.store.objclient import PreconditionFailed
from kerasbackup.store.phases import phase

LEASE_NAME = ".lease"
LEASE_FORMAT = "kerasbackup-lease"

_HELD = weakref.WeakSet()


def _iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_lease(raw):
    """Returns the lease dict, or None if `raw` is not a readable lease."""
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not (isinstance(d, dict) and d.get("format") == LEASE_FORMAT
            and isinstance(d.get("holder"), dict) and isinstance(d.get("token"), str)
            and isinstance(d.get("expires_at"), (int, float))):
        return None
    return d


class Lease:
    """The lease on one backup_dir.

    Args:
        client: an objclient client for the backup_dir's prefix.
        where: the backup_dir as shown in messages (no credentials).
        ttl: seconds a lease lives without renewal.
        renew_every: seconds between renewals (default ttl / 4).
        margin: the holder stops trusting an unrenewed lease this many
            seconds before its expiry (default ttl / 4).
        clock: wall clock, seconds since the epoch (tests inject one).
        monotonic: the holder's own interval clock.
    """

    def __init__(self, client, where, ttl=60.0, renew_every=None, margin=None,
                 clock=time.time, monotonic=time.monotonic):
        if not float(ttl) > 0:
            raise ValueError(f"lease ttl must be > 0 seconds, got {ttl!r}")
        self.client = client
        self.where = where
        self.ttl = float(ttl)
        self.renew_every = float(renew_every if renew_every is not None else ttl / 4)
        self.margin = float(margin if margin is not None else ttl / 4)
        self.clock = clock
        self.monotonic = monotonic
        self.token = secrets.token_hex(16)
        self.holder = None
        self.renewals = 0
        self._etag = None
        self._valid_until = None
        self._lost = None
        self._mutex = threading.RLock()
        self._stop = threading.Event()
        self._thread = None

    @property
    def held(self):
        """Whether this object holds the lease (as far as it knows)."""
        return self._etag is not None and self._lost is None

    @property
    def lost(self):
        """BackupLockedError saying who took the lease over, or None if it
        was not; release() forgets it."""
        with self._mutex:
            return None if self._lost is None else self._lost_error()

    def _body(self):
        now = self.clock()
        return json.dumps({
            "format": LEASE_FORMAT, "holder": self.holder, "token": self.token,
            "ttl": self.ttl, "renewed": _iso(now), "expires_at": now + self.ttl,
            "expires": _iso(now + self.ttl), "count": self.renewals,
        }, sort_keys=True).encode()

    def _stale(self, current):
        """Why `current` (a lease dict or None) may be taken over, or None."""
        if current is None:
            return "the lease object is unreadable"
        h = current["holder"]
        pid, host = h.get("pid"), h.get("host")
        if isinstance(pid, int) and host == socket.gethostname():
            if pid != os.getpid() and not pid_alive(pid):
                return f"process {pid} on this host is no longer running"
            if pid == os.getpid() and not self._ours(current):
                # e.g. a store that could not delete it while the server was down
                return "it was left by an earlier store of this process"
        if self.clock() > current["expires_at"]:
            return f"it expired at {current.get('expires')} without renewal"
        return None

    def acquire(self, wait=0.0):
        """Takes the lease or raises BackupLockedError; starts the renewer.

        With `wait` > 0, a live lease is watched for up to `wait` seconds
        (a holder killed on another host leaves its lease until it
        expires), re-read every `renew_every` seconds.
        """
        with self._mutex:
            if self.held:
                return self
            self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                           "started": utc_now()}
            self._lost = None
            give_up = self.monotonic() + float(wait)
            tries, waited = 0, False
            while tries < 10:
                tries += 1
                start = self.monotonic()
                try:
                    self._etag = self.client.create(LEASE_NAME, self._body())
                    break
                except PreconditionFailed:
                    pass
                try:
                    raw, etag = self.client.read(LEASE_NAME)
                except FileNotFoundError:
                    continue  # released meanwhile: try to create it again
                current = parse_lease(raw)
                why = self._stale(current)
                if why is None:
                    left = give_up - self.monotonic()
                    if left <= 0 or self._ours(current):
                        self._raise_locked(current)
                    if not waited:
                        waited = True
                        self._say_waiting(current, left)
                        phase("lease_waiting", backup_dir=self.where, path=LEASE_NAME)
                        tries = 0
                        continue  # look again once at once (a test's hook may expire it)
                    # Re-read when it would expire, at the latest.
                    expiry = current["expires_at"] - self.clock() + 0.05
                    time.sleep(max(0.01, min(self.renew_every, left, expiry)))
                    tries = 0  # watching a live lease is not contention
                    continue
                start = self.monotonic()
                try:
                    self._etag = self.client.replace(LEASE_NAME, self._body(), etag)
                except PreconditionFailed:
                    continue  # someone else moved first: look again
                h = (current or {}).get("holder", {})
                errors.warn(
                    f"backup_dir '{self.where}': taking over the lease of process "
                    f"{h.get('pid')} on host {h.get('host')} (started "
                    f"{h.get('started')}) because {why}; it was probably killed.",
                    StaleLockWarning, stacklevel=3)
                break
            else:
                raise BackupLockedError(
                    f"backup_dir '{self.where}': could not take the lease; other "
                    "processes keep changing it.", self.where, {})
            self._valid_until = start + self.ttl - self.margin
            _HELD.add(self)
            phase("lease_acquired", backup_dir=self.where, path=LEASE_NAME)
            self._stop.clear()
            self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                            name="kerasbackup-lease")
            self._thread.start()
            return self

    @staticmethod
    def _ours(current):
        """Whether a live Lease object of this process holds it (it cannot expire on us)."""
        h = current["holder"]
        return (h.get("pid") == os.getpid() and h.get("host") == socket.gethostname()
                and any(lease.held and lease.token == current.get("token")
                        for lease in list(_HELD)))

    def _say_waiting(self, current, left):
        # In a pod's or a job's log this explains the pause at train begin.
        h = current["holder"]
        print(f"kerasbackup: backup_dir '{self.where}' is leased by pid "
              f"{h.get('pid')} on host {h.get('host')} (started {h.get('started')}) "
              f"until {current.get('expires')}; waiting up to {left:.0f} s for it "
              "to be released or to expire.", file=sys.stderr, flush=True)

    def _raise_locked(self, current):
        h = dict(current["holder"])
        who = "another store object in this process" if self._ours(current) else \
            "another process"
        raise BackupLockedError(
            f"backup_dir '{self.where}' is in use by {who}: pid {h.get('pid')} on "
            f"host {h.get('host')}, started {h.get('started')}; its lease expires "
            f"at {current.get('expires')} unless renewed. Only one training run "
            "may use a backup_dir at a time; stop the other one or choose another "
            "backup_dir.", self.where, h)

    def renew(self):
        """Renews once by compare-and-swap; raises BackupLockedError if lost.

        Transient errors propagate (the renewer tries again later).
        """
        with self._mutex:
            if self._lost is not None:
                raise self._lost_error()
            if self._etag is None:
                raise BackupLockedError(
                    f"backup_dir '{self.where}': the lease is not held", self.where)
            start = self.monotonic()
            self.renewals += 1
            body = self._body()
            try:
                self._etag = self.client.replace(LEASE_NAME, body, self._etag)
            except PreconditionFailed:
                # Ours still, if an earlier renewal's answer was lost.
                current = None
                try:
                    raw, etag = self.client.read(LEASE_NAME)
                    current = parse_lease(raw)
                except FileNotFoundError:
                    etag = None
                if current is not None and current["token"] == self.token:
                    self._etag = self.client.replace(LEASE_NAME, body, etag)
                else:
                    h = (current or {}).get("holder") or {}
                    self._lost = (f"pid {h.get('pid')} on host {h.get('host')} took "
                                  "it over" if current else "the lease object is gone")
                    phase("lease_lost", backup_dir=self.where, path=LEASE_NAME)
                    raise self._lost_error() from None
            self._valid_until = start + self.ttl - self.margin
            phase("lease_renewed", backup_dir=self.where, path=LEASE_NAME,
                         count=self.renewals)

    def _lost_error(self):
        return BackupLockedError(
            f"backup_dir '{self.where}': this process lost its lease ({self._lost}); "
            "another process owns the backup_dir now, so nothing more is written.",
            self.where, {})

    def check(self):
        """Raises BackupLockedError unless the lease is safely held.

        An unrenewed lease near its expiry is renewed on the spot first.
        """
        with self._mutex:
            if self._lost is not None or self._etag is None:
                raise self._lost_error() if self._lost else BackupLockedError(
                    f"backup_dir '{self.where}': the lease is not held", self.where)
            if self.monotonic() >= self._valid_until:
                self.renew()

    def _renew_loop(self):
        while not self._stop.wait(self.renew_every):
            try:
                self.renew()
            except BackupLockedError:
                return
            except Exception:
                pass  # transient: check() refuses saves once the lease runs out

    def release(self):
        """Stops renewing and deletes the lease if it is still ours (best effort)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)  # bounded: one renewal's retries at most
        with self._mutex:
            etag, self._etag = self._etag, None
            _HELD.discard(self)
            lost, self._lost = self._lost, None
            if etag is None or lost is not None:
                return
            try:
                raw, etag = self.client.read(LEASE_NAME)
                current = parse_lease(raw)
                if current is not None and current["token"] == self.token:
                    self.client.delete(LEASE_NAME, token=etag)
            except Exception:
                pass  # it expires on its own


def _forget_after_fork():
    # A forked child (e.g. a data-loader worker) must neither renew nor
    # delete its parent's lease.
    for lease in list(_HELD):
        lease._etag = None
        lease._thread = None
        lease._mutex = threading.RLock()
        lease._stop = threading.Event()
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
