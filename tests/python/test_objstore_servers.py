"""The object-store back end against moto's S3 server and fake-gcs-server on 127.0.0.1."""

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from objservers import server, url  # noqa: F401 (fixtures)
from kerasbackup import errors
from kerasbackup.store import objclient, objstore, phases
from objstore_writer import check_arrays, make_arrays

HERE = os.path.dirname(os.path.abspath(__file__))
INST_PYTHON = os.path.abspath(os.path.join(HERE, "..", "..", "inst", "python"))
Store = objstore.ObjectCheckpointStore
# S3 parts must be >= 5 MiB (but the last); GCS composes parts of any size.
PART_SIZE = {"s3": 5 * 2**20, "gs": 2**20}


def child_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([INST_PYTHON, HERE]))




@pytest.fixture
def part_size(server):
    return PART_SIZE[server.scheme]


@pytest.fixture
def hook():
    yield phases.set_phase_hook
    phases.set_phase_hook(None)


def test_save_load_bit_identical_with_parallel_parts(url, part_size, hook):
    parts = []
    hook(lambda name, info: parts.append(info["part"]) if name == "part_uploaded" else None)
    with Store(url, keep=2, part_size=part_size, workers=3) as s:
        s.save(make_arrays(0, part_size), {"epoch": 0}, 0, 0)
        s.save(make_arrays(1, part_size), {"epoch": 1, "f": [1.5]}, 1, 4)  # 3 parts
    assert sorted(parts[-3:]) == [1, 2, 3]
    with Store(url, keep=2, part_size=part_size) as s:
        arrays, meta, info = s.load()
        assert meta == {"epoch": 1, "f": [1.5]} and (info["epoch"], info["batch"]) == (1, 4)
        check_arrays(arrays, 1, part_size)
        assert [i["verified"] for i in s.checkpoints()] == [True, True]
    assert [i["seq"] for i in objstore.backup_info(url)] == [1, 2]


def test_damaged_object_falls_back(url, part_size):
    with Store(url, keep=2, part_size=part_size) as s:
        s.save(make_arrays(0, part_size), {"epoch": 0}, 0, 0)
        s.save(make_arrays(1, part_size), {"epoch": 1}, 1, 0)
    raw = objclient.open_client(url)
    objects = json.loads(raw.read("ckpt-0000000002.json")[0])["objects"]
    name = objects + "/arrays.bin"
    data = bytearray(raw.read(name)[0])
    data[len(data) // 2] ^= 1
    raw.delete(name)
    raw.create(name, bytes(data))
    with Store(url, keep=2, part_size=part_size) as s:
        with pytest.warns(errors.CheckpointFallbackWarning, match="checksum mismatch"):
            arrays, meta, _ = s.load()
    assert meta == {"epoch": 0}
    check_arrays(arrays, 0, part_size)


def test_object_overwritten_behind_our_back_is_detected(url, part_size):
    with Store(url, part_size=part_size) as s:
        s.save(make_arrays(0, part_size), {"epoch": 0}, 0, 0)
    raw = objclient.open_client(url)
    objects = json.loads(raw.read("ckpt-0000000001.json")[0])["objects"]
    size, token = raw.stat(objects + "/state.json")
    raw.replace(objects + "/state.json", b"x" * size, token)  # same size, other bytes
    with Store(url, part_size=part_size) as s:
        with pytest.raises(errors.CorruptCheckpointError) as err:
            s.load()
    assert err.value.problems[0]["file"] == "state.json"
    assert err.value.problems[0]["kind"] == "checksum mismatch"


def test_conditional_writes_are_enforced_by_the_server(url):
    raw = objclient.open_client(url)
    token = raw.create("probe", b"1")
    with pytest.raises(objclient.PreconditionFailed):
        raw.create("probe", b"2")
    newer = raw.replace("probe", b"3", token)
    with pytest.raises(objclient.PreconditionFailed):
        raw.replace("probe", b"4", token)
    assert raw.read("probe") == (b"3", newer)
    raw.delete("probe")


def test_two_writers_one_is_locked_out(url):
    with Store(url) as a:
        a.save({"x": np.arange(3)}, {}, 0, 0)
        with pytest.raises(errors.BackupLockedError) as err:
            Store(url).open()
        assert err.value.holder["pid"] == os.getpid()
        # A writer in another process too.
        code = ("import sys\nfrom kerasbackup.store import objstore\n"
                "from kerasbackup.errors import BackupLockedError\n"
                "try:\n    objstore.ObjectCheckpointStore(sys.argv[1]).open()\n"
                "except BackupLockedError as e:\n    print('LOCKED', e.holder['pid'])\n")
        out = subprocess.run([sys.executable, "-c", code, url], cwd=HERE, env=child_env(),
                             capture_output=True, text=True, timeout=300)
        assert out.stdout.split() == ["LOCKED", str(os.getpid())], out.stderr


def test_expired_lease_is_taken_over(url):
    a = Store(url, lease_ttl=30).open()
    a.save({"x": np.arange(3)}, {"by": "a"}, 0, 0)
    b = Store(url, lease_ttl=30, clock=lambda: time.time() + 3600)
    with pytest.warns(errors.StaleLockWarning, match="expired"):
        b.open()
    with pytest.raises(errors.BackupLockedError):
        a.save({"x": np.arange(3)}, {"by": "a"}, 1, 0)
    b.save({"x": np.arange(4)}, {"by": "b"}, 1, 0)
    assert b.load()[1] == {"by": "b"}
    a.close()
    b.close()


# S3 only: gcsfs retries a refused connection for ~33 s per call by itself (6
# fixed tries), which would make this test take minutes on GCS.
@pytest.mark.parametrize("server", ["s3"], indirect=True)
def test_only_our_own_unfinished_uploads_are_aborted(server, url):
    # An upload of a sibling prefix ("run2" beside "run", perhaps a live fit's)
    # and one under our prefix with a name the store never writes stay.
    from objservers import BUCKET

    c = server.client()
    base = url.split(f"{BUCKET}/", 1)[1]
    keys = [base + "2/data-" + "ab" * 12 + "/arrays.bin", base + "/notes.bin",
            base + "/data-" + "cd" * 12 + "/arrays.bin"]
    for key in keys:
        c.create_multipart_upload(Bucket=BUCKET, Key=key)

    def pending():
        return sorted(u["Key"] for u in
                      c.list_multipart_uploads(Bucket=BUCKET).get("Uploads") or []
                      if u["Key"] in keys)
    with Store(url) as s:  # open() collects: our leftover upload goes
        assert pending() == sorted(keys[:2])
        s.delete()
    assert pending() == sorted(keys[:2])


@pytest.mark.parametrize("server", ["s3"], indirect=True)
def test_server_stopped_mid_upload_then_restarted(server, url, part_size, hook):
    secret = "kb-" + secrets.token_hex(16)
    options = {"key": "kb-test-key", "secret": secret}
    retry = objclient.RetryPolicy(attempts=3, initial=0.01, maximum=0.05)
    with Store(url, part_size=part_size, storage_options=options, retry=retry) as s:
        s.save(make_arrays(0, part_size), {"epoch": 0}, 0, 0)
        stopped = []

        def stop_server(name, info):
            if name == "part_uploaded" and not stopped:
                server.stop()
                stopped.append(info["part"])
        hook(stop_server)
        with pytest.raises(errors.BackupWriteError) as err:
            s.save(make_arrays(1, part_size), {"epoch": 1}, 1, 0)
        hook(None)
        assert stopped
        msg = str(err.value)
        assert url in msg and "previous checkpoint" in msg
        assert "EndpointConnectionError" in msg or "Connect" in msg, msg
        assert secret not in msg and secret not in repr(err.value)
        server.start()
        arrays, meta, _ = s.load()
        assert meta == {"epoch": 0}
        check_arrays(arrays, 0, part_size)
        s.save(make_arrays(1, part_size), {"epoch": 1}, 1, 0)
        assert s.load()[1] == {"epoch": 1}
    raw = objclient.open_client(url)
    for name in raw.list():
        assert secret.encode() not in raw.read(name)[0], name


def test_kill_9_during_uploads(server, url, part_size):
    """A writer killed at random points: the last checkpoint always loads, no partial one shows."""
    seed = int(os.environ.get("KB_SEED", random.randrange(2**32)))
    kills = int(os.environ.get("KB_OBJSTORE_KILLS", "12"))
    print(f"seed {seed}, {kills} kills on {server.scheme}")
    rng = random.Random(seed)
    env = child_env()
    last_saved = -1
    landed = {}
    for k in range(kills):
        proc = subprocess.Popen([sys.executable, "objstore_writer.py", url, str(part_size)],
                                cwd=HERE, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        # Only a guard against a hung writer (never part of a result).
        guard = threading.Timer(300, os.kill, (proc.pid, signal.SIGKILL))
        guard.start()
        try:
            first = proc.stdout.readline().split()
            assert first[:1] == ["resumed"], (first, proc.stderr.read())
            assert int(first[1]) >= last_saved  # the newest completed save was found
            target = rng.randint(1, 40)
            line = None
            for _ in range(target):
                line = proc.stdout.readline().split()
                assert line, proc.stderr.read()
                if line[0] == "saved":
                    last_saved = int(line[2])
            landed[line[1] if line[0] == "phase" else "after save"] = \
                landed.get(line[1] if line[0] == "phase" else "after save", 0) + 1
        finally:
            guard.cancel()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        # Every visible checkpoint verifies; the newest is at least the last saved.
        infos = objstore.backup_info(url, verify=True)
        assert all(i["verified"] for i in infos), infos
        if last_saved >= 0:
            assert infos and infos[-1]["epoch"] >= last_saved
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", errors.StaleLockWarning)
                with Store(url, keep=2, part_size=part_size) as s:
                    arrays, meta, _ = s.load()
            check_arrays(arrays, meta["epoch"], part_size)
            assert meta["epoch"] >= last_saved
    print("kills landed after:", landed)
    assert last_saved >= 0
