"""Object-store commit protocol, lease and clients on memory:// (fast, no server)."""

import json
import os
import secrets
import threading
import warnings

import numpy as np
import pytest

from kerasbackup import errors
from kerasbackup.store import format as fmt
from kerasbackup.store import lease, objclient, objstore, phases

Store = objstore.ObjectCheckpointStore


def arrays_for(epoch, n=1000):
    return {"w": np.arange(n, dtype=np.float32) * 0.25 + epoch,
            "b": np.full((3, 4), epoch, dtype=np.int64),
            "scalar": np.array(epoch, dtype=np.int32),
            "empty": np.zeros((0, 5), dtype=np.float64)}


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


@pytest.fixture
def url():
    return f"memory://kb-test/{secrets.token_hex(6)}/run"


@pytest.fixture
def raw(url):
    """A client on the same prefix, for tampering behind the store's back."""
    return objclient.open_client(url)


@pytest.fixture
def hook():
    """Installs a phase hook for one test: hook.set(fn)."""
    class H:
        def set(self, fn):
            phases.set_phase_hook(fn)
    yield H()
    phases.set_phase_hook(None)


def test_save_load_bit_identical_and_meta(url):
    meta = {"epoch": 3, "history": {"loss": [0.5, np.float32(0.25)]}}
    with Store(url) as s:
        assert s.load() is None
        with pytest.raises(errors.NoCheckpointError):
            s.load(required=True)
        info = s.save(arrays_for(3), meta, epoch=3, batch=7)
        assert info["seq"] == 1 and info["verified"] is True
        a, m, i = s.load()
    assert_same(a, arrays_for(3))
    assert m == {"epoch": 3, "history": {"loss": [0.5, 0.25]}}
    assert (i["epoch"], i["batch"], i["seq"]) == (3, 7, 1)
    # A fresh object (a resumed process) reads the same.
    with Store(url) as s:
        a, m, i = s.load()
    assert_same(a, arrays_for(3))


def test_layout_manifest_format_and_keep(url, raw):
    with Store(url, keep=2) as s:
        for e in range(4):
            s.save(arrays_for(e), {"e": e}, e, 0)
    names = set(raw.list())
    manifests = sorted(n for n in names if n.startswith("ckpt-"))
    assert manifests == ["ckpt-0000000003.json", "ckpt-0000000004.json"]
    data = {n.split("/")[0] for n in names if n.startswith("data-")}
    assert len(data) == 2
    assert names - set(manifests) - {n for n in names if n.startswith("data-")} \
        == {".kerasbackup", "LATEST"}  # the lease went with close()
    m = fmt.parse_manifest(raw.read(manifests[-1])[0])  # the local format's checker
    assert json.loads(raw.read(manifests[-1])[0])["format_version"] == fmt.FORMAT_VERSION
    assert m.seq == 4 and set(m.files) == {fmt.ARRAYS_NAME, fmt.STATE_NAME}
    assert m.extra["objects"].startswith("data-")
    latest = objstore.parse_latest(raw.read("LATEST")[0])
    assert [e["seq"] for e in latest["checkpoints"]] == [3, 4]
    assert [i["seq"] for i in objstore.backup_info(url)] == [3, 4]


PHASES = ["staging", "part_uploaded", "arrays_written", "manifest_written"]


@pytest.mark.parametrize("phase", PHASES)
def test_failure_before_commit_keeps_previous_and_hides_partial(url, raw, hook, phase):
    with Store(url) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
        before = set(raw.list())

        def fail(name, info):
            if name == phase:
                raise OSError(5, "injected failure at " + name)
        hook.set(fail)
        with pytest.raises(errors.BackupWriteError) as err:
            s.save(arrays_for(2), {"e": 2}, 2, 0)
        hook.set(None)
        assert "previous checkpoint" in str(err.value)
        assert s.backup_dir in str(err.value)
        # Nothing new is visible, and our partial objects are gone.
        assert [i["seq"] for i in s.checkpoints()] == [1]
        assert set(raw.list()) == before
        a, m, _ = s.load()
        assert m == {"e": 1}
        # The next save succeeds (a number whose manifest existed is not reused).
        assert s.save(arrays_for(3), {"e": 3}, 3, 0)["seq"] >= 2
        assert s.load()[1] == {"e": 3}


def test_uncommitted_manifest_is_invisible_and_collected(url, raw, hook):
    """A writer killed between the manifest and LATEST: the manifest counts for nothing."""
    with Store(url) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)

        class Killed(BaseException):
            pass

        def die(name, info):
            if name == "manifest_written":
                raise Killed()  # not an Exception: like a kill, no clean-up
        hook.set(die)
        with pytest.raises(Killed):
            s.save(arrays_for(2), {"e": 2}, 2, 0)
        hook.set(None)
        assert "ckpt-0000000002.json" in raw.list()
        assert [i["seq"] for i in objstore.backup_info(url)] == [1]
        assert s.load()[1] == {"e": 1}
        assert s.collect() >= 3  # manifest, arrays.bin, state.json
        assert not any(n.startswith("ckpt-0000000002") for n in raw.list())
        # The number is not reused while its manifest might still exist.
        assert s.save(arrays_for(3), {"e": 3}, 3, 0)["seq"] >= 2


def test_orphaned_staging_objects_collected_at_open(url, raw):
    with Store(url) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
    orphan = "data-" + "ab" * 12
    raw.create(orphan + "/arrays.bin", b"x" * 10)
    raw.create(orphan + "/arrays.bin.part-00001", b"x")
    with Store(url) as s:
        names = raw.list()
        assert not any(n.startswith(orphan) for n in names)
        assert s.load()[1] == {"e": 1}


def test_foreign_objects_never_touched(url, raw):
    with Store(url) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
        foreign = {"notes.txt": b"mine", "data-xyz/arrays.bin": b"also mine",
                   "ckpt-12.json": b"{}", "sub/ckpt-0000000009.json": b"{}"}
        for k, v in foreign.items():
            raw.create(k, v)
        s.collect()
        s.save(arrays_for(2), {"e": 2}, 2, 0)
        s.delete()
    left = raw.list()
    assert set(left) == set(foreign)
    for k, v in foreign.items():
        assert raw.read(k)[0] == v


def test_foreign_prefix_refused(url, raw):
    raw.create("someone-elses.csv", b"a,b")
    with pytest.raises(errors.BackupDirError, match="not created by kerasbackup"):
        Store(url).open()
    assert set(raw.list()) == {"someone-elses.csv"}


def test_delete_removes_everything_ours(url, raw):
    with Store(url, keep=2) as s:
        for e in range(3):
            s.save(arrays_for(e), {}, e, 0)
        s.delete()
        assert not s.is_open
    assert raw.list() == {}
    Store(url).delete()  # empty prefix: a no-op


def test_damaged_arrays_fall_back_with_warning(url, raw):
    with Store(url, keep=2) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
        s.save(arrays_for(2), {"e": 2}, 2, 0)
    newest = objstore.backup_info(url)[-1]
    m = json.loads(raw.read(newest["path"].rsplit("/", 1)[1])[0])
    name = m["objects"] + "/arrays.bin"
    data = bytearray(raw.read(name)[0])
    data[100] ^= 0xFF
    raw.delete(name)
    raw.create(name, bytes(data))  # same size, other bytes
    infos = objstore.backup_info(url)
    assert [i["verified"] for i in infos] == [True, False]
    assert "checksum mismatch" in infos[1]["problem"]
    with Store(url, keep=2) as s:
        with pytest.warns(errors.CheckpointFallbackWarning, match="checksum mismatch"):
            a, meta, info = s.load()
    assert meta == {"e": 1} and info["seq"] == 1
    assert_same(a, arrays_for(1))


@pytest.mark.parametrize("damage", ["truncate", "remove_state", "garbage_manifest"])
def test_every_checkpoint_damaged_raises_corrupt(url, raw, damage):
    with Store(url) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
    m = json.loads(raw.read("ckpt-0000000001.json")[0])
    if damage == "truncate":
        name = m["objects"] + "/arrays.bin"
        data = raw.read(name)[0]
        raw.delete(name)
        raw.create(name, data[:-1])
        kind = "truncated"
    elif damage == "remove_state":
        raw.delete(m["objects"] + "/state.json")
        kind = "missing"
    else:
        raw.delete("ckpt-0000000001.json")
        raw.create("ckpt-0000000001.json", b"{not json")
        kind = "manifest unreadable"
    with Store(url) as s:
        with pytest.raises(errors.CorruptCheckpointError) as err:
            s.load()
    assert err.value.problems[0]["kind"] == kind
    assert "left in place" in str(err.value)


def test_manifest_replaced_after_commit_is_detected(url, raw):
    """A valid-looking manifest swapped in behind our back does not match LATEST."""
    with Store(url, keep=2) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
        s.save(arrays_for(2), {"e": 2}, 2, 0)
    m2 = json.loads(raw.read("ckpt-0000000002.json")[0])
    m1 = json.loads(raw.read("ckpt-0000000001.json")[0])
    forged = dict(m1, seq=2, epoch=99)
    forged.pop("manifest_crc32")
    forged["manifest_crc32"] = fmt.manifest_crc32(forged)
    raw.delete("ckpt-0000000002.json")
    raw.create("ckpt-0000000002.json", json.dumps(forged).encode())
    fmt.parse_manifest(json.dumps(forged).encode())  # self-consistent: parses
    with Store(url, keep=2) as s:
        with pytest.warns(errors.CheckpointFallbackWarning, match="replaced after the commit"):
            _, meta, _ = s.load()
    assert meta == {"e": 1}
    assert m2["manifest_crc32"] != forged["manifest_crc32"]


def test_unreadable_latest_is_rebuilt_from_manifests(url, raw):
    with Store(url) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
    raw.delete("LATEST")
    raw.create("LATEST", b"garbage")
    assert [i["seq"] for i in objstore.backup_info(url)] == [1]
    with pytest.warns(errors.CheckpointFallbackWarning, match="LATEST is unreadable"):
        with Store(url) as s:
            assert s.load()[1] == {"e": 1}
    assert objstore.parse_latest(raw.read("LATEST")[0]) is not None


def test_cancel_before_commit(url, raw):
    with Store(url) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
        before = set(raw.list())
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(errors.SaveCancelled):
            s.save(arrays_for(2), {"e": 2}, 2, 0, cancel=cancel)
        assert set(raw.list()) == before
        assert s.load()[1] == {"e": 1}


def test_bad_input_fails_before_any_upload(url, raw):
    with Store(url) as s:
        before = set(raw.list())
        with pytest.raises(TypeError, match="object"):
            s.save({"x": np.array([object()])}, {}, 0, 0)
        with pytest.raises(TypeError, match="JSON"):
            s.save(arrays_for(0), {"f": object()}, 0, 0)
        assert set(raw.list()) == before


# ------------------------------------------------------------ faults, retries


class FlakyClient(objclient.MemoryClient):
    """memory:// client whose chosen operations fail `fails` times first."""

    def __init__(self, url, fails, ops, error=ConnectionResetError):
        _, bucket, prefix = objclient.split_url(url)
        super().__init__(bucket, prefix,
                         retry=objclient.RetryPolicy(attempts=3, sleep=lambda s: None))
        self.fails = fails
        self.ops = ops
        self.error = error
        self.calls = 0

    def _maybe_fail(self, op):
        if op in self.ops and self.fails > 0:
            self.fails -= 1
            raise self.error(104, f"injected {op} failure")

    def create(self, name, data):
        return self.with_retries(lambda: (self._maybe_fail("create"),
                                  objclient.MemoryClient.create(self, name, data))[1])

    def replace(self, name, data, token):
        return self.with_retries(lambda: (self._maybe_fail("replace"),
                                  objclient.MemoryClient.replace(self, name, data, token))[1])


def test_transient_errors_are_retried(url):
    client = FlakyClient(url, fails=2, ops={"create", "replace"})
    with Store(url, client=client) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
        client.fails = 2
        s.save(arrays_for(2), {"e": 2}, 2, 0)
        assert s.load()[1] == {"e": 2}


def test_persistent_failure_is_a_write_error_and_keeps_previous(url):
    client = FlakyClient(url, fails=0, ops={"create"})
    with Store(url, client=client) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
        client.fails = 10**6
        with pytest.raises(errors.BackupWriteError, match="injected create failure") as err:
            s.save(arrays_for(2), {"e": 2}, 2, 0)
        assert isinstance(err.value.os_error, ConnectionResetError)
        client.fails = 0
        assert s.load()[1] == {"e": 1}
        s.save(arrays_for(3), {"e": 3}, 3, 0)
        assert s.load()[1] == {"e": 3}


class LostAnswerClient(objclient.MemoryClient):
    """Applies the next LATEST replace, then reports a dropped connection."""

    armed = False

    def replace(self, name, data, token):
        out = super().replace(name, data, token)
        if name == "LATEST" and self.armed:
            self.armed = False
            raise ConnectionResetError(104, "answer lost")
        return out


def test_commit_whose_answer_was_lost(url):
    _, bucket, prefix = objclient.split_url(url)
    client = LostAnswerClient(bucket, prefix,
                              retry=objclient.RetryPolicy(attempts=1))
    with Store(url, client=client, keep=2) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
        client.armed = True
        with pytest.raises(errors.BackupWriteError):
            s.save(arrays_for(2), {"e": 2}, 2, 0)
        # It did commit; the objects were kept, and the store catches up.
        assert [i["seq"] for i in s.checkpoints()] == [1, 2]
        assert s.load()[1] == {"e": 2}
        s.save(arrays_for(3), {"e": 3}, 3, 0)
        assert [i["seq"] for i in s.checkpoints()] == [2, 3]


# ------------------------------------------------------------------- lease


def test_second_writer_is_locked_out(url):
    with Store(url) as a:
        a.save(arrays_for(1), {}, 1, 0)
        b = Store(url)
        with pytest.raises(errors.BackupLockedError) as err:
            b.open()
        assert err.value.holder["pid"] == os.getpid()
        assert "in use by another store object in this process" in str(err.value)
        with pytest.raises(errors.BackupLockedError):
            b.load()
    with Store(url) as b:  # released at close
        assert b.load() is not None


def test_expired_lease_is_taken_over_and_old_writer_fenced(url, raw):
    import time
    a = Store(url, lease_ttl=30).open()
    a.save(arrays_for(1), {"e": 1}, 1, 0)
    later = lambda: time.time() + 3600  # noqa: E731  b's clock is an hour ahead
    b = Store(url, lease_ttl=30, clock=later)
    with pytest.warns(errors.StaleLockWarning, match="expired"):
        b.open()
    held = json.loads(raw.read(".lease")[0])
    assert held["token"] == b.lease.token != a.lease.token
    # The old writer can no longer publish, even before it notices.
    with pytest.raises(errors.BackupLockedError):
        a.save(arrays_for(2), {"e": 2}, 2, 0)
    assert [i["seq"] for i in objstore.backup_info(url)] == [1]
    b.save(arrays_for(3), {"e": 3}, 3, 0)
    assert b.load()[1] == {"e": 3}
    a.close()  # must not remove b's lease
    assert json.loads(raw.read(".lease")[0])["holder"]["started"] is not None
    with pytest.raises(errors.BackupLockedError):
        Store(url).open()
    b.close()


def test_fenced_writer_cannot_publish_after_takeover_mid_save(url, raw, hook):
    """The takeover happens while the old writer uploads: its commit fails."""
    a = Store(url).open()
    a.save(arrays_for(1), {"e": 1}, 1, 0)
    b = Store(url, clock=lambda: 4e9)

    def take_over(name, info):
        if name == "manifest_written" and not b.is_open:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", errors.StaleLockWarning)
                b.open()
    hook.set(take_over)
    with pytest.raises(errors.BackupLockedError, match="taken over"):
        a.save(arrays_for(2), {"e": 2}, 2, 0)
    hook.set(None)
    assert [i["seq"] for i in objstore.backup_info(url)] == [1]
    b.save(arrays_for(3), {"e": 3}, 3, 0)
    assert b.load()[1] == {"e": 3}
    b.close()
    a.close()


def test_a_writer_that_lost_its_lease_does_not_take_it_back(url, raw):
    # Not even once the new owner has released it: it would publish stale
    # state over the new owner's checkpoints.
    a = Store(url, lease_ttl=30).open()
    a.save(arrays_for(1), {"e": 1}, 1, 0)
    b = Store(url, lease_ttl=30, clock=lambda: 4e9)
    with pytest.warns(errors.StaleLockWarning):
        b.open()
    b.save(arrays_for(5), {"e": 5}, 5, 0)
    with pytest.raises(errors.BackupLockedError, match="lost its lease"):
        a.lease.renew()  # as its renewer thread does
    b.close()
    for _ in range(2):
        with pytest.raises(errors.BackupLockedError, match="lost its lease"):
            a.save(arrays_for(2), {"e": 2}, 2, 0)
    assert [(i["seq"], i["epoch"]) for i in objstore.backup_info(url)] == [(2, 5)]
    a.close()  # as for the local store: usable again after close()
    with Store(url) as c:
        assert c.load()[1] == {"e": 5}


def test_latest_naming_only_a_missing_checkpoint_deletes_nothing(url, raw):
    with Store(url, keep=2) as s:
        s.save(arrays_for(1), {"e": 1}, 1, 0)
        s.save(arrays_for(2), {"e": 2}, 2, 0)
    latest, token = raw.read("LATEST")
    edited = json.loads(latest)
    edited["checkpoints"] = [{"seq": 9, "manifest_crc32": "00000000"}]
    raw.replace("LATEST", json.dumps(edited).encode(), token)
    before = sorted(n for n in raw.list() if n not in ("LATEST", ".lease"))
    with Store(url, keep=2) as s:
        with pytest.raises(errors.CorruptCheckpointError, match="left in place"):
            s.load()
    assert sorted(n for n in raw.list() if n not in ("LATEST", ".lease")) == before


def test_lease_names_holder_and_renews(url, raw, hook):
    renewed = threading.Event()
    hook.set(lambda name, info: renewed.set() if name == "lease_renewed" else None)
    s = Store(url, lease_ttl=0.4).open()  # renews every 0.1 s
    try:
        first = json.loads(raw.read(".lease")[0])
        assert first["holder"]["pid"] == os.getpid()
        assert first["holder"]["host"]
        assert first["holder"]["started"]
        assert renewed.wait(60)
        second = json.loads(raw.read(".lease")[0])
        assert second["expires_at"] >= first["expires_at"]
        assert second["token"] == first["token"]
    finally:
        s.close()
    assert ".lease" not in raw.list()


def test_holder_that_could_not_renew_renews_before_committing(url):
    ticks = [0.0]
    client = objclient.open_client(url)
    lease_ = lease.Lease(client, url, ttl=10, renew_every=10**6,
                         monotonic=lambda: ticks[0])
    lease_.acquire()
    lease_.check()
    ticks[0] = 100.0  # far past its own safety margin
    lease_.check()  # renews on the spot: nobody took it
    assert lease_.renewals == 1
    lease_.release()


def test_lease_lost_to_another_holder_is_reported(url, raw):
    client = objclient.open_client(url)
    a = lease.Lease(client, url, ttl=10, renew_every=10**6)
    a.acquire()
    b = lease.Lease(client, url, ttl=10, clock=lambda: 4e9)
    with pytest.warns(errors.StaleLockWarning):
        b.acquire()
    with pytest.raises(errors.BackupLockedError, match="lost its lease"):
        a.renew()
    with pytest.raises(errors.BackupLockedError):
        a.check()
    a.release()
    assert json.loads(raw.read(".lease")[0])["token"] == b.token
    b.release()


# ------------------------------------------------------- URLs and secrets


@pytest.mark.parametrize("bad, match", [
    ("ftp://host/x", "no conditional writes"),
    ("file:///tmp/x", "no conditional writes"),
])
def test_unsupported_scheme_is_a_dir_error(bad, match):
    with pytest.raises(errors.BackupDirError, match=match):
        Store(bad)


@pytest.mark.parametrize("bad, match", [
    ("s3://AKIAXX:hunter2secret@bucket/x", "credentials in the URL"),
    ("s3:///x", "names no bucket"),
    ("s3://bucket/a/../b", "'..'"),
    ("s3://bucket/x?versionId=1", "query"),
])
def test_bad_urls_are_refused_without_echoing_secrets(bad, match):
    with pytest.raises(ValueError, match=match) as err:
        Store(bad)
    assert "hunter2secret" not in str(err.value)


def test_display_url_and_scrub():
    assert objclient.display_url("s3://k:s@b/p/") == "s3://b/p"
    text = objclient.scrub("failed with key S3CR3T-value and token T0KEN",
                           {"secret": "S3CR3T-value", "client_kwargs": {"token": "T0KEN"},
                            "region": "eu"})
    assert "S3CR3T" not in text and "T0KEN" not in text


def test_transient_classification():
    assert objclient.is_transient(ConnectionRefusedError(111, "refused"))
    assert objclient.is_transient(TimeoutError())
    assert not objclient.is_transient(FileNotFoundError("x"))
    assert not objclient.is_transient(objclient.PreconditionFailed("x"))
    assert not objclient.is_transient(ValueError("x"))


def test_iter_parts_covers_buffers_exactly():
    bufs = [np.arange(n, dtype=np.uint8) for n in (0, 7, 1, 20, 3)]
    whole = b"".join(b.tobytes() for b in bufs)
    for size in (1, 4, 5, 31, 100):
        parts = list(objclient.iter_parts(bufs, size))
        assert b"".join(p for _, _, p in parts) == whole
        assert [n for n, _, _ in parts] == list(range(1, len(parts) + 1))
        assert all(len(p) == size for _, _, p in parts[:-1])
        assert [o for _, o, _ in parts] == [size * i for i in range(len(parts))]


def test_open_can_wait_for_a_lease_left_on_another_host(url, raw, hook):
    """A writer killed on another machine leaves a live-looking lease until it expires."""
    import time
    body = {"format": lease.LEASE_FORMAT, "token": "f" * 32, "ttl": 1.0, "count": 0,
            "holder": {"pid": 1, "host": "elsewhere.invalid", "started": "then"},
            "renewed": "then", "expires_at": time.time() + 3600, "expires": "later"}
    raw.create(".lease", json.dumps(body).encode())
    with pytest.raises(errors.BackupLockedError, match="elsewhere.invalid"):
        Store(url).open()  # lease_wait=0: at once
    waiting = []

    def soon(name, info):
        # Once the store is watching, the lease gets close to its end (as if
        # time had passed); the store must watch it until it expires.
        if name == "lease_waiting":
            waiting.append(name)
            _, etag = raw.read(".lease")
            raw.replace(".lease", json.dumps(
                dict(body, expires_at=time.time() + 0.3)).encode(), etag)
    hook.set(soon)
    s = Store(url, lease_ttl=1.0, lease_wait=120)
    with pytest.warns(errors.StaleLockWarning, match="expired"):
        s.open()  # watched it until it expired (a state, bounded by lease_wait)
    assert waiting == ["lease_waiting"]
    assert json.loads(raw.read(".lease")[0])["token"] == s.lease.token
    s.close()


def test_lease_left_by_an_earlier_store_of_this_process_is_taken_over(url, raw):
    """A store that could not delete its lease (server down at close) must not lock out the next."""
    s = Store(url).open()
    left = raw.read(".lease")[0]
    s.close()
    raw.create(".lease", left)  # as if the delete at close() had failed
    with pytest.warns(errors.StaleLockWarning, match="earlier store of this process"):
        with Store(url) as again:
            assert json.loads(raw.read(".lease")[0])["token"] == again.lease.token


def test_the_facade_dispatches_on_urls(tmp_path, url):
    from kerasbackup import store

    local = store.open_store(f"file://{tmp_path}/run")
    assert isinstance(local, store.CheckpointStore)
    assert local.backup_dir == str(tmp_path / "run")
    assert store.backup_dir_key(f"file://{tmp_path}/run") == \
        store.backup_dir_key(str(tmp_path / "run"))
    remote = store.open_store(url, keep=2)
    assert isinstance(remote, store.ObjectCheckpointStore) and remote.keep == 2
    assert store.backup_dir_key(url + "/") == url
    with remote:
        remote.save(arrays_for(1), {"e": 1}, 1, 0)
    assert [i["epoch"] for i in store.backup_info(url)] == [1]
    assert store.backup_info(str(tmp_path / "none")) == []
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        store.open_store(str(tmp_path), storage_options={"key": "k"})
    with pytest.raises(errors.BackupDirError, match="file:///path"):
        store.open_store("file://otherhost/x")


def test_workers_load_what_the_chief_published_without_the_lease(url, raw):
    # A distributed fit()'s other workers read the chief's checkpoint by its
    # sequence number while the chief holds the lease, and write nothing.
    from kerasbackup import store

    with Store(url, keep=2) as chief:
        chief.save(arrays_for(1), {"e": 1}, 1, 0)
        chief.save(arrays_for(2), {"e": 2}, 2, 0)
        before = sorted(raw.list())
        a, meta, info = store.load_published(url, 1)
        assert_same(a, arrays_for(1))
        assert meta == {"e": 1} and info["seq"] == 1
        with pytest.raises(errors.CorruptCheckpointError):
            store.load_published(url, 2, accept=lambda *args: [
                {"file": "state.json", "kind": "invalid content", "detail": "rejected"}])
        with pytest.raises(errors.NoCheckpointError, match="no committed checkpoint 7"):
            store.load_published(url, 7)
        assert sorted(raw.list()) == before
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        store.load_published("/tmp/x", 1, storage_options={"key": "k"})
