"""Tests of the crash-safe checkpoint store (kerasbackup.store)."""

import errno
import fcntl
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings
import zlib
from datetime import datetime, timezone

import numpy as np
import pytest

from kerasbackup import store as kb
from kerasbackup.saver import HostBuffers
from kerasbackup.store import (
    BackupDirError,
    BackupLockedError,
    BackupWriteError,
    CheckpointFallbackWarning,
    CheckpointStore,
    CorruptCheckpointError,
    NoCheckpointError,
    StaleLockWarning,
    backup_info,
)
from kerasbackup.store.fileio import (
    ALIGN, DIRECT_CHUNK, DIRECT_MIN, HeldFiles, address_of, create_file, write_stream)
from kerasbackup.store.format import prepare_arrays

from conftest import INST_PYTHON

# Child processes import only the store: the kerasbackup package imports
# Keras lazily, so this takes ~0.1 s.
CHILD_PRELUDE = textwrap.dedent(f"""
    import json, os, sys
    sys.path.insert(0, {INST_PYTHON!r})
    import numpy as np
    from kerasbackup import store
""")


def child_cmd(code, *args):
    return [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code), *map(str, args)]


def run_child(code, *args, prefix=(), timeout=60):
    """Runs `code` in a fresh interpreter; returns the JSON it prints last."""
    proc = subprocess.run(list(prefix) + child_cmd(code, *args),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Holder:
    """A child process that opens a store on `backup_dir` and keeps it open."""

    CODE = """
        st = store.CheckpointStore(sys.argv[1], keep=1).open()
        if sys.argv[2] == "save":
            st.save({"w": np.arange(1000.0)}, {"epoch": 0}, 0, 0)
            st.save({"w": np.arange(1000.0) + 1}, {"epoch": 1}, 1, 0)
        print("ready", flush=True)
        sys.stdin.read()   # hold the lock until the parent closes stdin
        st.close()
    """

    def __init__(self, backup_dir, action="none"):
        self.proc = subprocess.Popen(
            child_cmd(self.CODE, backup_dir, action),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line
        self.pid = self.proc.pid

    def release(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0

    def kill(self, reap=True):
        self.proc.kill()
        if reap:
            self.proc.wait(timeout=30)

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def sample_arrays(seed=0):
    rng = np.random.default_rng(seed)
    f32 = rng.standard_normal((64, 33)).astype(np.float32)
    f32[0, 0], f32[0, 1], f32[0, 2] = np.nan, -0.0, np.inf
    return {
        "f32": f32,
        "f64": rng.standard_normal(1000),
        "f16": rng.standard_normal(7).astype(np.float16),
        "i64": rng.integers(-2**62, 2**62, size=(3, 4, 5), dtype=np.int64),
        "u32": rng.integers(0, 2**32, size=17, dtype=np.uint32),
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "bool": rng.random((5, 5)) > 0.5,
        "c128": rng.standard_normal(4) + 1j * rng.standard_normal(4),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "scalar0d": np.array(3.25, dtype=np.float64),
        "int0d": np.array(7, dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "empty1": np.array([], dtype=np.uint8),
        "transposed": np.arange(12, dtype=np.float64).reshape(3, 4).T,
        "strided": np.arange(20, dtype=np.int32)[::3],
    }


def assert_bit_exact(expected, got):
    assert list(got) == list(expected)
    for name, a in expected.items():
        b = got[name]
        assert b.dtype == a.dtype, name
        assert b.shape == a.shape, name
        assert np.ascontiguousarray(a).tobytes() == b.tobytes(), name


def ckpt_names(d):
    return sorted(n for n in os.listdir(d) if n.startswith("ckpt-"))


# ---------------------------------------------------------------- basics


def test_round_trip_bit_exact(tmp_path):
    d = tmp_path / "backup"
    arrays = sample_arrays()
    meta = {"epoch": 3, "history": {"loss": [1.5, float("nan")]},
            "rng": [1, 2, 3], "np_scalar": np.int64(5), "nested": {"a": None}}
    with CheckpointStore(d) as st:
        assert st.load() is None
        info = st.save(arrays, meta, epoch=3, batch=17)
        assert info["epoch"] == 3 and info["batch"] == 17 and info["seq"] == 1
        assert info["verified"] is True and info["problem"] is None
        got, got_meta, got_info = st.load()
    assert_bit_exact(arrays, got)
    assert got["scalar0d"].ndim == 0 and got["int0d"].ndim == 0
    assert got_meta["epoch"] == 3 and got_meta["np_scalar"] == 5
    assert got_meta["history"]["loss"][0] == 1.5
    assert np.isnan(got_meta["history"]["loss"][1])
    assert got_info["path"] == info["path"] and got_info["verified"] is True
    # A new store object (as after a restart) reads the same.
    with CheckpointStore(d) as st:
        got2, _, _ = st.load(required=True)
    assert_bit_exact(arrays, got2)


def test_loaded_arrays_are_writable_and_independent(tmp_path):
    src = {"w": np.arange(10.0)}
    with CheckpointStore(tmp_path / "b") as st:
        st.save(src, {}, 0, 0)
        got, _, _ = st.load()
    got["w"][0] = 99
    assert src["w"][0] == 0 and got["w"].flags.writeable


def test_manifest_contents(tmp_path):
    d = tmp_path / "b"
    arrays = {"a": np.arange(100, dtype=np.float32), "b": np.ones((2, 2), bool)}
    with CheckpointStore(d) as st:
        info = st.save(arrays, {"k": "v"}, epoch=4, batch=9)
    ck = info["path"]
    assert os.path.basename(ck) == "ckpt-0000000001"
    assert sorted(os.listdir(ck)) == ["arrays.bin", "manifest.json", "state.json"]
    with open(os.path.join(ck, "manifest.json")) as f:
        m = json.load(f)
    assert m["format_version"] == kb.FORMAT_VERSION == 1
    assert m["epoch"] == 4 and m["batch"] == 9 and m["seq"] == 1
    created = datetime.strptime(m["created"], "%Y-%m-%dT%H:%M:%S.%fZ")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert abs((now - created).total_seconds()) < 60
    assert set(m["files"]) == {"arrays.bin", "state.json"}
    for name, entry in m["files"].items():
        with open(os.path.join(ck, name), "rb") as f:
            data = f.read()
        assert entry["size"] == len(data)
        assert entry["crc32"] == f"{zlib.crc32(data):08x}"
    # The data file is exactly the arrays' bytes, back to back.
    with open(os.path.join(ck, "arrays.bin"), "rb") as f:
        assert f.read() == arrays["a"].tobytes() + arrays["b"].tobytes()
    with open(os.path.join(ck, "state.json")) as f:
        state = json.load(f)
    assert state["meta"] == {"k": "v"}
    assert [(e["name"], e["dtype"], e["shape"], e["offset"]) for e in state["arrays"]] == [
        ("a", "<f4", [100], 0), ("b", "|b1", [2, 2], 400)]
    assert info["size_bytes"] == sum(os.path.getsize(os.path.join(ck, n))
                                     for n in os.listdir(ck))
    assert os.path.isfile(d / ".kerasbackup")


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_keep_limits_checkpoint_count(tmp_path, keep):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=keep) as st:
        for epoch in range(5):
            st.save({"x": np.full(10, epoch)}, {"epoch": epoch}, epoch, 0)
            assert len(ckpt_names(d)) == min(epoch + 1, keep)
        got, meta, info = st.load()
        assert meta["epoch"] == 4 and info["seq"] == 5
        assert [c["seq"] for c in st.checkpoints()] == list(range(6 - keep, 6))
    assert ckpt_names(d) == [f"ckpt-{s:010d}" for s in range(6 - keep, 6)]
    assert not [n for n in os.listdir(d) if n.startswith((".staging", ".trash"))]


def test_seq_continues_after_reopen(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=1) as st:
        st.save({"x": np.zeros(1)}, {}, 0, 0)
        st.save({"x": np.zeros(1)}, {}, 1, 0)
    with CheckpointStore(d, keep=1) as st:
        assert st.save({"x": np.zeros(1)}, {}, 2, 0)["seq"] == 3


def test_load_without_checkpoint(tmp_path):
    with CheckpointStore(tmp_path / "b") as st:
        assert st.load() is None
        assert st.latest is None and st.checkpoints() == []
        with pytest.raises(NoCheckpointError) as ei:
            st.load(required=True)
        assert str(tmp_path / "b") in str(ei.value)


def test_checkpoints_and_backup_info(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=2) as st:
        st.save({"x": np.zeros(10)}, {}, 1, 5)
        st.save({"x": np.zeros(20)}, {}, 2, 0)
        infos = st.checkpoints()
        latest = st.latest
    assert [(i["seq"], i["epoch"], i["batch"]) for i in infos] == [(1, 1, 5), (2, 2, 0)]
    for i in infos:
        assert set(i) == {"path", "seq", "epoch", "batch", "created",
                          "size_bytes", "verified", "problem"}
        assert i["verified"] is True and i["problem"] is None
        assert i["size_bytes"] > 0 and i["created"].endswith("Z")
    assert backup_info(d) == infos
    assert latest["seq"] == 2 and latest["verified"] is None  # checksums not read
    assert [i["verified"] for i in backup_info(d, verify=False)] == [None, None]
    assert backup_info(tmp_path / "nonexistent") == []


def test_bad_input_fails_before_touching_disk(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d) as st:
        st.save({"x": np.ones(3)}, {"epoch": 0}, 0, 0)
        with pytest.raises(TypeError):
            st.save({"x": np.array([object()])}, {}, 1, 0)
        with pytest.raises(TypeError):
            st.save({"x": np.ones(3)}, {"bad": object()}, 1, 0)
        with pytest.raises(TypeError):
            st.save({1: np.ones(3)}, {}, 1, 0)
        assert sorted(os.listdir(d)) == [".kerasbackup", ".lock", "ckpt-0000000001"]
        assert st.load()[1] == {"epoch": 0}


def test_save_from_background_threads(tmp_path):
    d = tmp_path / "b"
    results, errors = [], []
    with CheckpointStore(d, keep=2) as st:
        def work(i):
            try:
                results.append(st.save({"x": np.full(200_000, i)}, {"i": i}, i, 0))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(r["seq"] for r in results) == list(range(1, 7))
        arrays, meta, info = st.load()
        assert info["seq"] == 6 and (arrays["x"] == meta["i"]).all()
    assert len(ckpt_names(d)) == 2


def test_large_state_uses_threaded_checksum(tmp_path):
    # Bigger than the chunk sizes and the threading threshold, so the
    # direct-I/O write (several chunks, an unaligned tail) and the
    # helper-thread and multi-chunk paths of load and verify run.
    big = np.random.default_rng(1).standard_normal(5_000_000)  # 40 MB
    arrays = {"big": big, "small": np.arange(3)}
    with CheckpointStore(tmp_path / "b") as st:
        info = st.save(arrays, {}, 0, 0)
        got, _, _ = st.load()
        assert st.checkpoints()[0]["verified"] is True
    assert_bit_exact(arrays, got)
    with open(os.path.join(info["path"], "arrays.bin"), "rb") as f:
        data = f.read()
    with open(os.path.join(info["path"], "manifest.json")) as f:
        assert json.load(f)["files"]["arrays.bin"]["crc32"] == f"{zlib.crc32(data):08x}"
    # A flipped byte in the last chunk is still found by the streaming verify.
    with open(os.path.join(info["path"], "arrays.bin"), "r+b") as f:
        f.seek(len(data) - 5)
        f.write(bytes([data[-5] ^ 1]))
    assert backup_info(tmp_path / "b")[0]["problem"].startswith(
        "arrays.bin: checksum mismatch")


# ------------------------------------------------------------ corruption


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _flip(path, offset=None):
    with open(path, "r+b") as f:
        data = f.read()
        pos = len(data) // 2 if offset is None else offset
        f.seek(pos)
        f.write(bytes([data[pos] ^ 0xFF]))


def _flip_manifest_digit(path):
    # Change a digit of the creation time: still valid JSON, so only the
    # manifest's own checksum can notice.
    with open(path, "rb") as f:
        data = f.read()
    pos = data.index(b'"created": "') + len(b'"created": "') + 3
    digit = data[pos:pos + 1]
    assert digit.isdigit()
    new = b"7" if digit != b"7" else b"3"
    with open(path, "wb") as f:
        f.write(data[:pos] + new + data[pos + 1:])


def _empty(path):
    open(path, "wb").close()


def _grow(path):
    with open(path, "ab") as f:
        f.write(b"\0")


def _unknown_version(path):
    with open(path) as f:
        m = json.load(f)
    m["format_version"] = 99
    with open(path, "w") as f:
        json.dump(m, f)


CORRUPTIONS = [
    # (file, damage, expected kind, text expected in the detail)
    ("arrays.bin", _truncate, "truncated", "file has"),
    ("state.json", _truncate, "truncated", "file has"),
    ("manifest.json", _truncate, "manifest unreadable", "invalid JSON"),
    ("arrays.bin", _flip, "checksum mismatch", "crc32"),
    ("state.json", _flip, "checksum mismatch", "crc32"),
    ("manifest.json", _flip_manifest_digit, "checksum mismatch", "manifest crc32"),
    ("arrays.bin", _empty, "truncated", "file has 0"),
    ("state.json", _empty, "truncated", "file has 0"),
    ("manifest.json", _empty, "manifest unreadable", "empty"),
    ("arrays.bin", _grow, "size mismatch", "file has"),
    ("state.json", _grow, "size mismatch", "file has"),
    ("arrays.bin", os.unlink, "missing", "does not exist"),
    ("state.json", os.unlink, "missing", "does not exist"),
    ("manifest.json", os.unlink, "manifest unreadable", "missing"),
    ("manifest.json", _unknown_version, "unknown format version 99", "reads format version 1"),
]


def _snapshot(d):
    out = {}
    for root, _, files in os.walk(d):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, d)] = f.read()
    return out


@pytest.mark.parametrize("fname,damage,kind,detail", CORRUPTIONS,
                         ids=[f"{c[0]}-{c[1].__name__}" for c in CORRUPTIONS])
def test_corruption_detected_with_own_message(tmp_path, fname, damage, kind, detail):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=1) as st:
        st.save(sample_arrays(), {"epoch": 0}, 0, 0)
        info = st.save(sample_arrays(1), {"epoch": 1}, 1, 0)
        assert len(ckpt_names(d)) == 1  # keep=1: nothing to fall back to
        damage(os.path.join(info["path"], fname))
        before = _snapshot(info["path"])
        with pytest.raises(CorruptCheckpointError) as ei:
            st.load()
        err = ei.value
        msg = str(err)
        assert info["path"] in msg and fname in msg and kind in msg, msg
        assert err.backup_dir == str(d)
        assert err.problems[0] == {"checkpoint": info["path"], "file": fname,
                                   "kind": kind, "detail": err.problems[0]["detail"]}
        assert detail in err.problems[0]["detail"], err.problems[0]
        # Nothing was deleted or repaired: the evidence stays.
        assert _snapshot(info["path"]) == before
        listed = st.checkpoints()
        assert len(listed) == 1 and listed[0]["verified"] is False
        assert listed[0]["problem"].startswith(f"{fname}: {kind}")
        # Also with required=True it is a corruption, not "no checkpoint".
        with pytest.raises(CorruptCheckpointError):
            st.load(required=True)


def test_corruption_kinds_are_distinct():
    kinds = {(c[2], c[3]) for c in CORRUPTIONS}
    assert {k for k, _ in kinds} == {
        "truncated", "manifest unreadable", "checksum mismatch", "size mismatch",
        "missing", "unknown format version 99"}


def test_fallback_to_older_checkpoint_with_keep2(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=2) as st:
        st.save({"x": np.full(1000, 1.0)}, {"epoch": 1}, 1, 0)
        newest = st.save({"x": np.full(1000, 2.0)}, {"epoch": 2}, 2, 0)
        _flip(os.path.join(newest["path"], "arrays.bin"))
        with pytest.warns(CheckpointFallbackWarning) as rec:
            arrays, meta, info = st.load()
        assert meta == {"epoch": 1} and (arrays["x"] == 1.0).all()
        assert info["seq"] == 1 and info["verified"] is True
        msg = str(rec[0].message)
        assert newest["path"] in msg and "arrays.bin" in msg
        assert "checksum mismatch" in msg and "ckpt-0000000001" in msg
        assert os.path.isdir(newest["path"])  # left for inspection
        assert [c["verified"] for c in st.checkpoints()] == [True, False]


def test_fallback_when_newest_manifest_missing(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=2) as st:
        st.save({"x": np.zeros(3)}, {"epoch": 1}, 1, 0)
        newest = st.save({"x": np.ones(3)}, {"epoch": 2}, 2, 0)
        os.unlink(os.path.join(newest["path"], "manifest.json"))
        with pytest.warns(CheckpointFallbackWarning, match="manifest unreadable"):
            assert st.load()[1] == {"epoch": 1}


def test_all_checkpoints_corrupt_with_keep2(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=2) as st:
        a = st.save({"x": np.zeros(3)}, {}, 1, 0)
        b = st.save({"x": np.ones(3)}, {}, 2, 0)
        _truncate(os.path.join(a["path"], "arrays.bin"))
        _flip(os.path.join(b["path"], "state.json"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback warning: nothing to fall back to
            with pytest.raises(CorruptCheckpointError) as ei:
                st.load()
    assert [(p["checkpoint"], p["file"], p["kind"]) for p in ei.value.problems] == [
        (b["path"], "state.json", "checksum mismatch"),
        (a["path"], "arrays.bin", "truncated")]
    assert a["path"] in str(ei.value) and b["path"] in str(ei.value)


# ---------------------------------------------------------------- locking


def _holder_record(d):
    with open(os.path.join(d, ".lock")) as f:
        return json.load(f)


def test_second_store_in_same_process_is_refused(tmp_path):
    d = tmp_path / "b"
    first = CheckpointStore(d).open()
    rec = _holder_record(d)
    assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()
    second = CheckpointStore(d)
    with pytest.raises(BackupLockedError) as ei:
        second.open()
    msg = str(ei.value)
    assert str(os.getpid()) in msg and socket.gethostname() in msg
    assert rec["started"] in msg and "this process" in msg
    assert ei.value.holder == rec
    assert not second.is_open
    with pytest.raises(BackupLockedError):
        second.save({"x": np.zeros(1)}, {}, 0, 0)  # save() opens on demand
    first.close()
    first.close()  # idempotent
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean close leaves no stale record
        second.open()
    second.close()


def test_lock_held_by_live_process_is_refused(tmp_path):
    d = tmp_path / "b"
    holder = Holder(d)
    try:
        rec = _holder_record(d)
        assert rec["pid"] == holder.pid
        with pytest.raises(BackupLockedError) as ei:
            CheckpointStore(d).open()
        msg = str(ei.value)
        assert f"pid {holder.pid}" in msg and socket.gethostname() in msg
        assert rec["started"] in msg and "another process" in msg
        assert ei.value.holder["pid"] == holder.pid
        holder.release()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            CheckpointStore(d).open().close()
    finally:
        holder.cleanup()


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_dead_holder_lock_is_taken_over(tmp_path, reap):
    d = tmp_path / "b"
    holder = Holder(d)
    try:
        holder.kill(reap=reap)
        if not reap:
            # Wait until it has exited without reaping it: a zombie now.
            os.waitid(os.P_PID, holder.pid, os.WEXITED | os.WNOWAIT)
        with pytest.warns(StaleLockWarning) as rec:
            st = CheckpointStore(d).open()
        assert str(holder.pid) in str(rec[0].message)
        assert _holder_record(d)["pid"] == os.getpid()
        st.close()
    finally:
        holder.cleanup()


def test_forked_child_does_not_keep_the_lock(tmp_path):
    # e.g. a multiprocessing data-loader worker forked during training.
    d = tmp_path / "b"
    st = CheckpointStore(d).open()
    rec = _holder_record(d)
    r, w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, then wait to be killed (alive however long that takes)
        try:
            ok = not st.is_open
            st.close()  # must not clear the parent's holder record
            os.write(w, b"1" if ok else b"0")
            os.close(hold_w)
            os.read(hold_r, 1)
        finally:
            os._exit(0)
    os.close(hold_r)
    try:
        os.close(w)
        assert os.read(r, 1) == b"1"
        assert _holder_record(d) == rec
        st.close()
        # The lock is free although the forked child still has its files.
        with CheckpointStore(d) as other:
            assert other.is_open
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(hold_w)


def test_backup_info_while_another_process_holds_the_lock(tmp_path):
    d = tmp_path / "b"
    holder = Holder(d, action="save")
    try:
        infos = backup_info(d)
        assert [(i["seq"], i["epoch"], i["verified"]) for i in infos] == [(2, 1, True)]
        assert CheckpointStore(d).checkpoints() == infos  # no lock needed
        with pytest.raises(BackupLockedError):
            CheckpointStore(d).open()
        assert _holder_record(d)["pid"] == holder.pid  # untouched by readers
    finally:
        holder.cleanup()


# -------------------------------------------------------- directory checks


def test_foreign_non_empty_dir_is_refused(tmp_path):
    d = tmp_path / "mydata"
    d.mkdir()
    (d / "results.csv").write_text("1,2,3\n")
    with pytest.raises(BackupDirError) as ei:
        CheckpointStore(d).open()
    msg = str(ei.value)
    assert str(d) in msg and ".kerasbackup" in msg and "results.csv" in msg
    assert os.listdir(d) == ["results.csv"]  # not even a lock file added
    with pytest.raises(BackupDirError):
        CheckpointStore(d).delete()
    assert os.listdir(d) == ["results.csv"]


def test_empty_and_missing_dirs_are_adopted(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "a" / "b" / "c"
    for d in (empty, missing):
        with CheckpointStore(d) as st:
            st.save({"x": np.zeros(2)}, {}, 0, 0)
        assert (d / ".kerasbackup").is_file()
        with CheckpointStore(d) as st:  # the marker makes it ours now
            assert st.load() is not None


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_the_marker_is_synced_by_the_first_save_not_at_open(tmp_path, monkeypatch):
    # open() runs at the start of every fit(): training does not wait for
    # the marker's fsync. The first save after each open() syncs it, then
    # the directory, before anything else of it can be durable (a marker
    # found at open() may come from a writer killed before it synced it).
    d = tmp_path / "b"
    events = []
    real_fsync = os.fsync

    def spy(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    previous = kb.set_phase_hook(lambda name, info: events.append((name,)))
    marker, syncs = ("fsync", str(d / ".kerasbackup")), [("fsync", str(d))]

    def first_save_syncs_the_marker():
        assert events.count(marker) == 1
        i = events.index(marker)
        assert events[i + 1 : i + 3] == syncs + [("staging",)]

    try:
        with CheckpointStore(d) as st:
            assert (d / ".kerasbackup").is_file() and events == []
            cancel = threading.Event()
            cancel.set()
            with pytest.raises(kb.SaveCancelled):
                st.save({"x": np.zeros(2)}, {}, 0, 0, cancel=cancel)
            first_save_syncs_the_marker()
            del events[:]
            st.save({"x": np.ones(2)}, {}, 1, 0)
            assert marker not in events and ("published",) in events
        st = CheckpointStore(d)
        for _ in range(2):  # a new store, then the same one opened again
            del events[:]
            with st:
                assert events == []
                st.save({"x": np.ones(2)}, {}, 2, 0)
                first_save_syncs_the_marker()
                del events[:]
                st.save({"x": np.ones(2)}, {}, 3, 0)
                assert marker not in events and ("published",) in events
    finally:
        kb.set_phase_hook(previous)


def test_backup_dir_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(BackupDirError) as ei:
        CheckpointStore(f).open()
    msg = str(ei.value)
    assert str(f) in msg and "Not a directory" in msg and "ENOTDIR" in msg
    assert isinstance(ei.value.os_error, OSError)
    # A path below a file fails at creation, again naming it and the error.
    with pytest.raises(BackupDirError) as ei:
        CheckpointStore(f / "sub").open()
    assert str(f / "sub") in str(ei.value) and "ENOTDIR" in str(ei.value)
    assert f.read_text() == "x"


def test_open_removes_leftover_staging_and_trash(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=1) as st:
        info = st.save({"x": np.arange(5)}, {"epoch": 0}, 0, 0)
    for name in (".staging-99999-deadbeef", ".trash-99999-cafe-ckpt-0000000000"):
        (d / name).mkdir()
        (d / name / "arrays.bin").write_bytes(b"partial")
    # The store only ever writes directories under these names.
    (d / ".staging-12345-0000").write_bytes(b"stray file")
    # A reader without the lock never cleans up.
    assert len(backup_info(d)) == 1
    assert (d / ".staging-99999-deadbeef").exists()
    with CheckpointStore(d) as st:
        assert sorted(os.listdir(d)) == [".kerasbackup", ".lock", ".staging-12345-0000",
                                         "ckpt-0000000001"]
        assert st.load()[2]["path"] == info["path"]


def test_delete_keeps_user_files(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=2) as st:
        st.save({"x": np.zeros(3)}, {}, 0, 0)
        st.save({"x": np.zeros(3)}, {}, 1, 0)
    (d / ".staging-1-ab").mkdir()
    (d / "notes.txt").write_text("mine")
    (d / "plots").mkdir()
    (d / "plots" / "loss.png").write_bytes(b"png")
    st = CheckpointStore(d)
    st.delete()
    assert not st.is_open
    assert sorted(os.listdir(d)) == ["notes.txt", "plots"]
    assert (d / "plots" / "loss.png").read_bytes() == b"png"


def test_delete_removes_own_dir(tmp_path):
    d = tmp_path / "b"
    st = CheckpointStore(d, keep=2).open()
    st.save({"x": np.zeros(3)}, {}, 0, 0)
    st.delete()
    assert not d.exists()
    st.delete()  # no-op on a missing dir
    holder = Holder(d)
    try:
        with pytest.raises(BackupLockedError):
            CheckpointStore(d).delete()  # refused while in use
        assert sorted(os.listdir(d)) == [".kerasbackup", ".lock"]
    finally:
        holder.cleanup()


# ---------------------------------------------------------- write failures


def _assert_intact(d, epoch):
    """The failed save left the previous checkpoint loadable and no staging."""
    names = os.listdir(d)
    assert not [n for n in names if n.startswith((".staging", ".trash"))], names
    with CheckpointStore(d) as st:
        arrays, meta, info = st.load()
    assert meta["epoch"] == epoch and (arrays["x"] == epoch).all()
    assert len(ckpt_names(d)) == 1


FAILING_SAVE = """
    import resource, signal
    d, mode = sys.argv[1], sys.argv[2]
    st = store.CheckpointStore(d, keep=1).open()
    st.save({"x": np.full(1000, 0.0)}, {"epoch": 0}, 0, 0)
    if mode == "fsize":
        # Writes beyond the limit fail with EFBIG instead of killing us.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
    elif mode == "setuid":
        # uid 65534 will own the directory but lack write permission in it.
        os.chown(d, 65534, 65534)
        os.chmod(d, 0o555)
        os.setgid(65534)
        os.setuid(65534)
    out = {}
    try:
        st.save({"x": np.full(1_000_000, 1.0)}, {"epoch": 1}, 1, 0)
    except store.BackupWriteError as e:
        out = {"message": str(e), "errno": e.os_error.errno,
               "backup_dir": e.backup_dir}
    out["listing"] = sorted(os.listdir(d))
    loaded = st.load()
    out["loaded_epoch"] = loaded[1]["epoch"]
    st.close()
    print(json.dumps(out))
"""


def _check_write_error(out, d, errno_value):
    name = errno.errorcode[errno_value]
    assert "message" in out, out
    assert out["errno"] == errno_value, out
    assert str(d) in out["message"] and name in out["message"], out
    assert os.strerror(errno_value) in out["message"], out
    assert out["backup_dir"] == str(d)
    assert out["listing"] == [".kerasbackup", ".lock", "ckpt-0000000001"], out
    assert out["loaded_epoch"] == 0


def test_disk_full_via_rlimit_fsize(tmp_path):
    d = tmp_path / "b"
    out = run_child(FAILING_SAVE, d, "fsize")
    _check_write_error(out, d, errno.EFBIG)
    _assert_intact(d, 0)


def test_disk_full_in_process(tmp_path):
    # ENOSPC in the middle of the data file, after some bytes were written.
    d = tmp_path / "b"

    def failing(phase, info):
        if phase == "arrays_chunk":
            assert 0 < info["written"] <= info["total"]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with CheckpointStore(d) as st:
        st.save({"x": np.full(10, 0.0)}, {"epoch": 0}, 0, 0)
        previous = kb.set_phase_hook(failing)
        try:
            with pytest.raises(BackupWriteError) as ei:
                st.save({"x": np.full(10, 1.0)}, {"epoch": 1}, 1, 0)
        finally:
            kb.set_phase_hook(previous)
    msg = str(ei.value)
    assert str(d) in msg and "No space left on device" in msg and "ENOSPC" in msg
    assert ei.value.os_error.errno == errno.ENOSPC
    _assert_intact(d, 0)


def test_failure_at_publish_rename(tmp_path, monkeypatch):
    d = tmp_path / "b"
    with CheckpointStore(d) as st:
        st.save({"x": np.full(10, 0.0)}, {"epoch": 0}, 0, 0)

        def failing_rename(src, dst, **kwargs):
            raise OSError(errno.EIO, os.strerror(errno.EIO), src)
        monkeypatch.setattr(os, "rename", failing_rename)
        with pytest.raises(BackupWriteError, match="EIO"):
            st.save({"x": np.full(10, 1.0)}, {"epoch": 1}, 1, 0)
        monkeypatch.undo()
    _assert_intact(d, 0)


def test_permission_denied(tmp_path):
    if os.geteuid() != 0:
        # Unprivileged: a read-only directory really stops writes.
        d = tmp_path / "b"
        with CheckpointStore(d) as st:
            st.save({"x": np.full(10, 0.0)}, {"epoch": 0}, 0, 0)
            os.chmod(d, 0o555)
            try:
                with pytest.raises(BackupWriteError) as ei:
                    st.save({"x": np.full(10, 1.0)}, {"epoch": 1}, 1, 0)
            finally:
                os.chmod(d, 0o755)
        msg = str(ei.value)
        assert str(d) in msg and "EACCES" in msg and "Permission denied" in msg
        _assert_intact(d, 0)
        return
    # As root chmod does not stop writes, so the child opens the store and
    # saves, then gives the directory to uid 65534 without write permission
    # and drops to that uid. The tree lives under a world-traversable /tmp
    # dir (pytest's tmp dirs are 0700, which would fail for a different
    # reason).
    top = tempfile.mkdtemp(prefix="kb-perm-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        d = os.path.join(top, "b")
        out = run_child(FAILING_SAVE, d, "setuid")
        _check_write_error(out, d, errno.EACCES)
        os.chown(d, 0, 0)  # ours again, or the store refuses it
        os.chmod(d, 0o755)
        _assert_intact(d, 0)
    finally:
        shutil.rmtree(top, ignore_errors=True)


_NS_PROBE = (
    # tmpfs (for a small disk) and a read-only bind mount (for EROFS).
    "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d && "
    "mount --bind $d $d && mount -o remount,ro,bind $d $d && "
    "! touch $d/x 2>/dev/null; s=$?; umount $d; umount $d; rmdir $d; exit $s"
)


def _mount_namespace():
    """Returns (command prefix, None) to run a child in a private mount
    namespace where it may mount, or (None, reason) if that is impossible.

    Plain `unshare -m` needs root; `unshare -rm` (a user namespace) works
    for unprivileged users where the kernel allows it.
    """
    if not shutil.which("unshare") or not shutil.which("mount"):
        return None, "unshare/mount not installed"
    errors = []
    for prefix in (["unshare", "-m", "--propagation", "private"],
                   ["unshare", "-r", "-m", "--propagation", "private"]):
        try:
            p = subprocess.run(prefix + ["sh", "-c", _NS_PROBE],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            errors.append(f"{' '.join(prefix[:2])}: {e}")
            continue
        if p.returncode == 0:
            return prefix, None
        errors.append(f"{' '.join(prefix[:2])}: {p.stderr.strip() or p.returncode}")
    return None, "cannot mount in a private mount namespace (" + "; ".join(errors) + ")"


READ_ONLY = """
    import subprocess
    d = sys.argv[1]
    with store.CheckpointStore(d, keep=1) as st:
        st.save({"x": np.full(1000, 0.0)}, {"epoch": 0}, 0, 0)
    subprocess.run(["mount", "--bind", d, d], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", d, d], check=True)
    out = {"listing": sorted(os.listdir(d))}
    try:
        store.CheckpointStore(d, keep=1).open()
    except store.BackupDirError as e:
        out.update(message=str(e), errno=e.os_error.errno, backup_dir=e.backup_dir)
    out["info"] = [(i["epoch"], i["verified"]) for i in store.backup_info(d)]
    print(json.dumps(out))
"""


def test_read_only_filesystem(tmp_path):
    # The store writes through the descriptor of the directory it opened, so
    # only a store opened on the read-only mount sees it: open() refuses it.
    prefix, reason = _mount_namespace()
    if reason:
        pytest.skip(f"simulating a read-only FS needs a mount namespace: {reason}")
    d = tmp_path / "b"
    # The child bind-mounts backup_dir read-only in its own mount namespace.
    out = run_child(READ_ONLY, d, prefix=prefix)
    assert out["errno"] == errno.EROFS, out
    assert str(d) in out["message"] and "EROFS" in out["message"], out
    assert out["backup_dir"] == str(d)
    assert out["listing"] == [".kerasbackup", ".lock", "ckpt-0000000001"], out
    assert out["info"] == [[0, True]], out  # readable without the lock
    _assert_intact(d, 0)


REAL_DISK_FULL = """
    import subprocess
    d = sys.argv[1]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", d], check=True)
    st = store.CheckpointStore(d, keep=1).open()
    st.save({"x": np.full(1000, 0.0)}, {"epoch": 0}, 0, 0)
    out = {}
    try:
        st.save({"x": np.full(1_000_000, 1.0)}, {"epoch": 1}, 1, 0)  # 8 MB
    except store.BackupWriteError as e:
        out = {"message": str(e), "errno": e.os_error.errno, "backup_dir": e.backup_dir}
    out["listing"] = sorted(os.listdir(d))
    out["loaded_epoch"] = st.load()[1]["epoch"]
    # After the failure there is room again for a small save.
    out["next"] = st.save({"x": np.full(1000, 2.0)}, {"epoch": 2}, 2, 0)["seq"]
    st.close()
    print(json.dumps(out))
"""


def test_disk_full_on_small_tmpfs(tmp_path):
    prefix, reason = _mount_namespace()
    if reason:
        pytest.skip(f"mounting a small tmpfs needs a mount namespace: {reason}")
    d = tmp_path / "b"
    d.mkdir()
    out = run_child(REAL_DISK_FULL, d, prefix=prefix)
    _check_write_error(out, d, errno.ENOSPC)
    assert out["next"] == 2


def test_phase_hook_sees_each_step_in_order_and_a_raise_keeps_the_old_checkpoint(tmp_path):
    d = str(tmp_path / "b")
    seen = []
    previous = kb.set_phase_hook(lambda phase, info: seen.append((phase, info["backup_dir"])))
    try:
        with CheckpointStore(d) as s:
            s.save({"a": np.arange(4)}, {}, 0, 1)
            first = [p for p, _ in seen]
            assert first == ["staging", "arrays_chunk", "arrays_written",
                             "manifest_written", "published", "pruned"]
            assert all(bd == d for _, bd in seen)

            def fail(phase, info):
                if phase == "manifest_written":
                    raise OSError(errno.ENOSPC, "No space left on device")
            kb.set_phase_hook(fail)
            with pytest.raises(BackupWriteError, match="No space left"):
                s.save({"a": np.arange(4) + 1}, {}, 0, 2)
            arrays, _, info = s.load()
            assert (info["epoch"], info["batch"]) == (0, 1)
            np.testing.assert_array_equal(arrays["a"], np.arange(4))
            assert not [n for n in os.listdir(d) if n.startswith(".staging")]
    finally:
        kb.set_phase_hook(previous)


# ======================================================= hardening (issue 10)
# Each test below failed against the single-module store of main 9849bea.


def _crc(data):
    return f"{zlib.crc32(data):08x}"


def rewrite_checkpoint(ckpt, state=None, manifest=None, raw_manifest=None):
    """Rewrites a checkpoint's state.json or manifest with valid checksums.

    Restates the documented format on purpose (the manifest's crc32 is over
    its canonical JSON without `manifest_crc32`), so that what is tested is
    the store's check of the content, not of the checksums.
    """
    mpath = os.path.join(ckpt, "manifest.json")
    if raw_manifest is not None:
        with open(mpath, "wb") as f:
            f.write(raw_manifest)
        return
    with open(mpath) as f:
        m = json.load(f)
    if state is not None:
        raw = state if isinstance(state, bytes) else json.dumps(state).encode()
        with open(os.path.join(ckpt, "state.json"), "wb") as f:
            f.write(raw)
        m["files"]["state.json"] = {"size": len(raw), "crc32": _crc(raw)}
    m.update(manifest or {})
    m.pop("manifest_crc32")
    m["manifest_crc32"] = _crc(json.dumps(m, sort_keys=True, separators=(",", ":")).encode())
    with open(mpath, "w") as f:
        json.dump(m, f)


def two_checkpoints(d):
    """Saves epochs 1 and 2 with keep=2; returns the newer one's path."""
    arrays = {"a": np.arange(4, dtype=np.float64), "b": np.ones((2, 3), np.int32),
              "c": np.array(7, np.int64)}
    with CheckpointStore(d, keep=2) as st:
        st.save(arrays, {"epoch": 1}, 1, 0)
        return st.save(arrays, {"epoch": 2}, 2, 0)["path"]


def run_bounded(fn):
    """Runs fn() on a thread; fails (instead of hanging the suite) if it blocks."""
    box = {}

    def work():
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                box["value"] = fn()
            box["warnings"] = [w for w in caught]
        except BaseException as e:  # reported to the test below
            box["error"] = e
    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(120)  # a guard against a hang, never reached when the store is right
    assert not t.is_alive(), "blocked: the store opened or read without bound"
    if "error" in box:
        raise box["error"]
    return box["value"], box["warnings"]


def assert_falls_back(d, newest, kind, text=""):
    """load() skips the damaged newest checkpoint; backup_info() flags it."""
    (arrays, meta, info), caught = run_bounded(lambda: CheckpointStore(d).load())
    assert meta == {"epoch": 1} and info["seq"] == 1, info
    assert (arrays["a"] == np.arange(4)).all()
    falls = [str(w.message) for w in caught if w.category is CheckpointFallbackWarning]
    assert len(falls) == 1 and newest in falls[0] and kind in falls[0], falls
    infos, _ = run_bounded(lambda: backup_info(d))
    assert [i["verified"] for i in infos] == [True, False], infos
    assert kind in infos[1]["problem"] and text in infos[1]["problem"], infos[1]
    # With nothing older, the same damage is a classed corruption.
    shutil.rmtree(os.path.join(d, "ckpt-0000000001"))
    with pytest.raises(CorruptCheckpointError) as ei:
        run_bounded(lambda: CheckpointStore(d).load())
    assert kind in str(ei.value)


# ------------------------------------ 1: the lock file and backup_dir itself


def test_planted_lock_symlink_is_refused_and_victim_untouched(tmp_path):
    d = tmp_path / "b"
    CheckpointStore(d).open().close()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    os.unlink(d / ".lock")
    os.symlink(victim, d / ".lock")
    for action in (lambda: CheckpointStore(d).open(),
                   lambda: CheckpointStore(d).save({"x": np.zeros(1)}, {}, 0, 0),
                   lambda: CheckpointStore(d).delete()):
        with pytest.raises(BackupDirError) as ei:
            action()
        assert "symbolic link" in str(ei.value) and str(victim) in str(ei.value)
    assert victim.read_bytes() == b"precious\n"
    assert os.readlink(d / ".lock") == str(victim)


def test_lock_that_is_a_hard_link_is_refused(tmp_path):
    d = tmp_path / "b"
    CheckpointStore(d).open().close()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    os.unlink(d / ".lock")
    os.link(victim, d / ".lock")
    with pytest.raises(BackupDirError, match="2 hard links"):
        CheckpointStore(d).open()
    assert victim.read_bytes() == b"precious\n"


def test_backup_dir_owned_by_another_user_is_refused(tmp_path):
    if os.geteuid() == 0:
        d = tmp_path / "theirs"
        d.mkdir()
        os.chown(d, 65534, 65534)
        owner = "uid 65534"
    else:  # unprivileged: a directory root owns
        d, owner = "/", "uid 0"
    with pytest.raises(BackupDirError) as ei:
        CheckpointStore(d).open()
    msg = str(ei.value)
    assert f"owned by {owner}" in msg and "mode 0" in msg and str(d) in msg, msg
    if os.geteuid() == 0:
        assert os.listdir(d) == []  # nothing written, not even the marker


@pytest.mark.parametrize("mode,who", [(0o777, "its group and all users"),
                                      (0o775, "its group"), (0o757, "all users")])
def test_backup_dir_writable_by_others_is_refused(tmp_path, mode, who):
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, mode)
    with pytest.raises(BackupDirError) as ei:
        CheckpointStore(d).open()
    msg = str(ei.value)
    assert f"mode {mode:04o} ({stat.filemode(stat.S_IFDIR | mode)})" in msg, msg
    assert f"writable by {who} without the sticky bit" in msg and "chmod go-w" in msg
    assert os.listdir(d) == []


def test_sticky_world_writable_dir_of_ours_is_fine(tmp_path):
    d = tmp_path / "sticky"
    d.mkdir()
    os.chmod(d, 0o1777)
    with CheckpointStore(d) as st:
        st.save({"x": np.zeros(3)}, {"epoch": 0}, 0, 0)
        assert st.load()[1] == {"epoch": 0}


def test_created_backup_dir_is_not_writable_by_others(tmp_path):
    old = os.umask(0)
    try:
        with CheckpointStore(tmp_path / "new") as st:
            st.save({"x": np.zeros(3)}, {}, 0, 0)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) & 0o022 == 0


# ----------------------------- 2: files inside a checkpoint: regular, bounded


def _symlink_to_copy(path, tmp):
    # The same bytes, so only the refusal to follow the link can tell.
    outside = os.path.join(tmp, "outside-" + os.path.basename(path))
    shutil.copyfile(path, outside)
    os.unlink(path)
    os.symlink(outside, path)


def _fifo(path, tmp):
    os.unlink(path)
    os.mkfifo(path)


def _dev_zero(path, tmp):
    os.unlink(path)
    os.symlink("/dev/zero", path)


def _char_device(path, tmp):
    os.unlink(path)
    os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero's numbers


def _directory(path, tmp):
    os.unlink(path)
    os.mkdir(path)


NOT_REGULAR = [
    ("arrays.bin", _symlink_to_copy, "is a symbolic link"),
    ("state.json", _symlink_to_copy, "is a symbolic link"),
    ("manifest.json", _symlink_to_copy, "is a symbolic link"),
    ("manifest.json", _fifo, "is a FIFO"),
    ("arrays.bin", _fifo, "is a FIFO"),
    ("manifest.json", _dev_zero, "is a symbolic link"),
    ("arrays.bin", _dev_zero, "is a symbolic link"),
    ("state.json", _char_device, "is a character device"),
    ("arrays.bin", _directory, "is a directory"),
]


@pytest.mark.parametrize("fname,damage,what", NOT_REGULAR,
                         ids=[f"{c[0]}-{c[1].__name__.strip('_')}" for c in NOT_REGULAR])
def test_non_regular_checkpoint_file_is_corrupt(tmp_path, fname, damage, what):
    if damage is _char_device and os.geteuid() != 0:
        pytest.skip("mknod needs root")
    d = str(tmp_path / "b")
    newest = two_checkpoints(d)
    damage(os.path.join(newest, fname), str(tmp_path))
    assert_falls_back(d, newest, "not a regular file", f"{fname} {what}")


def test_oversized_manifest_is_not_read(tmp_path):
    d = str(tmp_path / "b")
    newest = two_checkpoints(d)
    rewrite_checkpoint(newest, raw_manifest=b" " * (64 * 1024 + 1) + b"{}")
    assert_falls_back(d, newest, "manifest unreadable", "far more than a manifest")


# ------------------------------------------- 5: a malformed table or manifest


def _entry(i, **changes):
    def damage(state):
        state["arrays"][i].update(changes)
        return state
    return damage


def _state(fn):
    def damage(state):
        fn(state)  # changes state in place
        return state
    return damage


DEEP = b"[" * 100_000 + b"]" * 100_000
TABLE_DAMAGE = {
    "object dtype": _entry(0, dtype="|O8"),
    "unknown dtype": _entry(0, dtype="<q9"),
    "dtype not a string": _entry(0, dtype=7),
    "zero-size dtype": _entry(2, dtype="|S0"),
    "float shape": _entry(0, shape=[4.0]),
    "string shape": _entry(0, shape=["4"]),
    "shape a string": _entry(0, shape="4"),
    "bool shape": _entry(1, shape=[True, 2, 3], nbytes=24),
    "nested shape": _entry(0, shape=[[4]]),
    "negative shape": _entry(0, shape=[-4]),
    "shape over int64": _entry(0, shape=[2**64]),
    "too many dims": _entry(2, shape=[1] * 33),
    "offset float": _entry(0, offset=0.0),
    "offset inconsistent": _entry(1, offset=33),
    "nbytes inconsistent": _entry(1, nbytes=25),
    "nbytes negative": _entry(1, nbytes=-24),
    "name not a string": _entry(0, name=5),
    "duplicate names": _entry(1, name="a"),
    "entry not an object": _state(lambda s: s["arrays"].__setitem__(0, 5)),
    "entry missing keys": _state(lambda s: s["arrays"][0].pop("dtype")),
    "table not a list": _state(lambda s: s.__setitem__("arrays", {"a": 1})),
    "table too short": _state(lambda s: s["arrays"].pop()),
    "empty dims overflow int64": _state(lambda s: s["arrays"].append(
        {"name": "z", "dtype": "<f8", "shape": [2**62, 2**62, 0], "offset": 64,
         "nbytes": 0})),
    "no meta": _state(lambda s: s.pop("meta")),
    "state not an object": lambda s: [s],
    "100,000-deep meta": "deep",
}


@pytest.mark.parametrize("case", list(TABLE_DAMAGE))
def test_malformed_array_table_is_corrupt(tmp_path, case):
    d = str(tmp_path / "b")
    newest = two_checkpoints(d)
    with open(os.path.join(newest, "state.json"), "rb") as f:
        raw = f.read()
    damage = TABLE_DAMAGE[case]
    if damage == "deep":
        state = raw[:-1] + b', "deeper": ' + DEEP + b"}"
    else:
        state = damage(json.loads(raw))
    rewrite_checkpoint(newest, state=state)
    assert_falls_back(d, newest, "state.json: invalid content")


MANIFEST_DAMAGE = {
    "epoch a string": ({"epoch": "x"}, "invalid content"),
    "batch negative": ({"batch": -1}, "invalid content"),
    "seq zero": ({"seq": 0}, "invalid content"),
    "created a number": ({"created": 5}, "invalid content"),
    "format_version true": ({"format_version": True}, "unknown format version True"),
    "file size a bool": ({"files": {"arrays.bin": {"size": True, "crc32": "00000000"},
                                    "state.json": {"size": 1, "crc32": "00000000"}}},
                         "invalid content"),
    "file list a list": ({"files": []}, "invalid content"),
    "100,000-deep manifest": (DEEP, "manifest unreadable"),
    "deep inside a valid manifest": ({"writer": json.loads(b"[" * 500 + b"]" * 500)},
                                     None),
}


@pytest.mark.parametrize("case", list(MANIFEST_DAMAGE))
def test_malformed_manifest_is_corrupt(tmp_path, case):
    d = str(tmp_path / "b")
    newest = two_checkpoints(d)
    change, kind = MANIFEST_DAMAGE[case]
    if isinstance(change, bytes):
        rewrite_checkpoint(newest, raw_manifest=change)
    else:
        rewrite_checkpoint(newest, manifest=change)
    if kind is None:  # unusual but well formed: still loads
        with CheckpointStore(d) as st:
            assert st.load()[1] == {"epoch": 2}
        return
    assert_falls_back(d, newest, f"manifest.json: {kind}")
    # The structure-only listing reads the manifest too.
    assert backup_info(d, verify=False)[-1]["verified"] is False


# ---------------------------------------- 6: sequence numbers of any length


def test_sequence_numbers_beyond_ten_digits(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=1) as st:
        st.save({"x": np.zeros(3)}, {"epoch": 0}, 0, 0)
    # A stray checkpoint with a 10-digit seq: the next one needs 11 digits.
    os.rename(d / "ckpt-0000000001", d / "ckpt-9999999999")
    with CheckpointStore(d, keep=1) as st:
        info = st.save({"x": np.ones(3)}, {"epoch": 1}, 1, 0)
        assert info["seq"] == 10**10 and info["path"] == str(d / "ckpt-10000000000")
        arrays, meta, loaded = st.load()
        assert meta == {"epoch": 1} and loaded["seq"] == 10**10
        # Pruning (keep=1) saw both, and removed the older one.
        assert ckpt_names(d) == ["ckpt-10000000000"]
        assert [c["seq"] for c in st.checkpoints()] == [10**10]
    with CheckpointStore(d, keep=2) as st:
        assert st.save({"x": np.ones(3)}, {"epoch": 2}, 2, 0)["seq"] == 10**10 + 1
        assert [c["seq"] for c in backup_info(d)] == [10**10, 10**10 + 1]
        assert st.latest["seq"] == 10**10 + 1
    CheckpointStore(d).delete()
    assert not d.exists()


def test_only_canonical_checkpoint_names_count(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=1) as st:
        st.save({"x": np.zeros(3)}, {"epoch": 0}, 0, 0)
    # Other spellings of seq 1 and 2 are not checkpoints: never loaded,
    # listed, pruned or deleted.
    for name in ("ckpt-1", "ckpt-00000000002", "ckpt-0000000000"):
        shutil.copytree(d / "ckpt-0000000001", d / name)
    with CheckpointStore(d, keep=1) as st:
        assert st.save({"x": np.ones(3)}, {"epoch": 1}, 1, 0)["seq"] == 2
        assert [c["seq"] for c in st.checkpoints()] == [2]
    CheckpointStore(d).delete()
    assert sorted(os.listdir(d)) == ["ckpt-0000000000", "ckpt-00000000002", "ckpt-1"]


# ------------------------------ found by the engine audit of 2026-11-28


def test_a_manifest_that_contradicts_the_state_is_corrupt(tmp_path):
    # backup_info() reports the manifest's position, fit() resumes at the
    # state's: a checkpoint where they differ is not used.
    d = str(tmp_path / "b")
    newest = two_checkpoints(d)
    rewrite_checkpoint(newest, manifest={"epoch": 0, "batch": 3})
    assert_falls_back(d, newest, "invalid content",
                      "state.json says epoch 2, manifest.json says 0")


def test_a_removed_backup_dir_is_a_lost_lock_not_a_write_error(tmp_path):
    d = tmp_path / "b"
    st = CheckpointStore(d, keep=1).open()
    st.save({"x": np.zeros(3)}, {"epoch": 1}, 1, 0)
    shutil.rmtree(d)
    for _ in range(2):  # and it stays lost
        with pytest.raises(BackupLockedError, match="removed or replaced"):
            st.save({"x": np.ones(3)}, {"epoch": 2}, 2, 0)
    st.close()
    assert not os.path.exists(d)


def test_a_checkpoint_that_cannot_be_renamed_does_not_stop_the_others_going(
        tmp_path, monkeypatch):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=3) as st:
        for epoch in (1, 2, 3):
            st.save({"x": np.full(3, epoch)}, {"epoch": epoch}, epoch, 0)
    stuck, rename = "ckpt-0000000001", os.rename

    def rename_but_stuck(src, dst, **kwargs):
        if src == stuck:
            raise PermissionError(errno.EPERM, "Operation not permitted", src)
        return rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", rename_but_stuck)
    with CheckpointStore(d, keep=1) as st:
        with pytest.warns(RuntimeWarning, match=f"could not remove old checkpoint {stuck}"):
            st.save({"x": np.full(3, 4)}, {"epoch": 4}, 4, 0)
    names = sorted(n for n in os.listdir(d) if n.startswith("ckpt-"))
    assert names == [stuck, "ckpt-0000000004"]
    with pytest.raises(BackupWriteError, match="Operation not permitted"):
        CheckpointStore(d).delete()
    assert sorted(n for n in os.listdir(d) if n.startswith("ckpt-")) == [stuck]


# ------------------------------------- 7: the lock's identity is re-checked

LOSES_LOCK = """
    d, stop_at = sys.argv[1], sys.argv[2]
    st = store.CheckpointStore(d, keep=1).open()
    st.save({"x": np.zeros(10)}, {"epoch": 0}, 0, 0)

    def wait_for_parent():
        print("waiting", flush=True)
        sys.stdin.readline()

    store.set_phase_hook(lambda phase, info: wait_for_parent() if phase == stop_at else None)
    out = {}

    def attempt(name, fn):
        try:
            fn()
            out[name] = "ok"
        except store.BackupError as e:
            out[name] = [type(e).__name__, str(e)]
    if stop_at == "delete":
        wait_for_parent()
    else:
        attempt("save", lambda: st.save({"x": np.ones(10)}, {"epoch": 1}, 1, 0))
        store.set_phase_hook(None)
        attempt("save_again", lambda: st.save({"x": np.ones(10)}, {"epoch": 2}, 2, 0))
    attempt("delete", st.delete)
    st.close()
    print(json.dumps(out))
"""


@pytest.mark.parametrize("stop_at,replace", [
    ("manifest_written", "lock"), ("manifest_written", "dir"),
    ("published", "lock"), ("delete", "lock"), ("delete", "dir")])
def test_lost_lock_is_detected_before_publish_prune_and_delete(tmp_path, stop_at, replace):
    d = tmp_path / "b"
    first = subprocess.Popen(child_cmd(LOSES_LOCK, d, stop_at), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    second = None
    try:
        assert first.stdout.readline().strip() == "waiting"
        # While the first writer waits, its lock stops guarding backup_dir...
        if replace == "lock":
            os.unlink(d / ".lock")
        else:
            shutil.rmtree(d)
            os.mkdir(d, 0o700)
        # ...and a second process locks the new one.
        second = Holder(d)
        before = _snapshot(d)
        first.stdin.write("go\n")
        first.stdin.flush()
        out = json.loads(first.stdout.read().strip().splitlines()[-1])
        assert first.wait() == 0
        for step in ("save", "save_again", "delete"):
            if step in out:
                assert out[step][0] == "BackupLockedError", (step, out)
                assert "removed or replaced" in out[step][1], out[step]
                assert f"locked by pid {second.pid}" in out[step][1], out[step]
        # The first writer wrote nothing into what the second one holds.
        after = _snapshot(d)
        if stop_at == "published":  # it had published while the lock was its own
            assert [n for n in after if n.startswith("ckpt-0000000002")]
            assert [n for n in after if n.startswith("ckpt-0000000001")]  # not pruned
            assert {n: after[n] for n in before} == before
        else:
            assert after == before
        assert _holder_record(d)["pid"] == second.pid
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()
        if second is not None:
            second.cleanup()


def test_lock_replaced_between_open_and_flock_is_not_trusted(tmp_path):
    # An flock on a file that is no longer named .lock guards nothing: the
    # store re-checks the name after locking and locks the current file.
    d = tmp_path / "b"
    CheckpointStore(d).open().close()
    holder = Holder(d)
    try:
        os.unlink(d / ".lock")  # the holder keeps an flock on a nameless file
        with CheckpointStore(d) as st:  # so the new .lock is free
            assert _holder_record(d)["pid"] == os.getpid()
            st.save({"x": np.zeros(1)}, {}, 0, 0)
    finally:
        holder.cleanup()


# --------------------------------- 10: clean-up never deletes what isn't ours


def test_dir_holding_only_a_user_lock_is_refused(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / ".lock").write_text("my own lock\n")
    for action in (lambda: CheckpointStore(d).open(), lambda: CheckpointStore(d).delete()):
        with pytest.raises(BackupDirError, match="no .kerasbackup marker; it contains .lock"):
            action()
    assert os.listdir(d) == [".lock"]
    assert (d / ".lock").read_text() == "my own lock\n"


def test_marker_that_is_a_symlink_is_refused(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("x")
    os.symlink(victim, d / ".kerasbackup")
    with pytest.raises(BackupDirError, match="marker '.kerasbackup' is not a regular file"):
        CheckpointStore(d).delete()
    assert os.readlink(d / ".kerasbackup") == str(victim) and victim.read_text() == "x"


def test_delete_keeps_the_working_directory(tmp_path, monkeypatch):
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)
    with CheckpointStore(".") as st:
        assert st.backup_dir == str(d)
        st.save({"x": np.zeros(3)}, {}, 0, 0)
    CheckpointStore(".").delete()
    assert d.is_dir() and os.listdir(d) == []
    assert os.getcwd() == str(d)


def test_delete_keeps_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    with CheckpointStore(home) as st:
        st.save({"x": np.zeros(3)}, {}, 0, 0)
    CheckpointStore(home).delete()
    assert home.is_dir() and os.listdir(home) == []


def test_delete_of_root_is_refused():
    before = sorted(os.listdir("/"))
    with pytest.raises(BackupDirError):
        CheckpointStore("/").delete()
    assert sorted(os.listdir("/")) == before


def test_delete_removes_only_our_own_entries(tmp_path):
    d = tmp_path / "b"
    with CheckpointStore(d, keep=2) as st:
        st.save({"x": np.zeros(3)}, {}, 0, 0)
        second = st.save({"x": np.zeros(3)}, {}, 1, 0)["path"]
    # Somewhere else, files with our names: a link to them is never followed.
    victim = tmp_path / "victim"
    shutil.copytree(second, victim)
    want = _snapshot(victim)
    os.symlink(victim, d / "ckpt-0000000009")
    os.symlink(victim, d / ".trash-1-ab-ckpt-0000000003")
    os.symlink(victim, d / ".staging-1-cd")
    (d / ".staging-2-ef").write_text("a file, not a staging directory")
    (d / "ckpt-0000000001" / "notes.txt").write_text("mine")
    os.symlink("/dev/null", d / "ckpt-0000000002" / "state.json.link")
    CheckpointStore(d).delete()
    assert _snapshot(victim) == want
    links = [".staging-1-cd", ".trash-1-ab-ckpt-0000000003", "ckpt-0000000009"]
    assert sorted(os.listdir(d)) == [".staging-1-cd", ".staging-2-ef",
                                     ".trash-1-ab-ckpt-0000000003", "ckpt-0000000001",
                                     "ckpt-0000000002", "ckpt-0000000009"]
    assert all(os.readlink(d / n) == str(victim) for n in links)
    assert (d / ".staging-2-ef").read_text() == "a file, not a staging directory"
    # Checkpoint directories holding the user's files stay whole.
    assert sorted(os.listdir(d / "ckpt-0000000001")) == [
        "arrays.bin", "manifest.json", "notes.txt", "state.json"]
    assert (d / "ckpt-0000000001" / "notes.txt").read_text() == "mine"
    assert "state.json.link" in os.listdir(d / "ckpt-0000000002")


FUZZ_SEED = int(os.environ.get("KB_FUZZ_SEED", "1127"))
FUZZ_VALUES = [None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63) - 1, 2**100, 0.5,
               4.0, float("inf"), float("nan"), "", "4", "<f8", "|O8", [], [4], [-1],
               [2**62, 2**62], {}, {"a": 1}, [[[[]]]]]


def _json_paths(node, path=()):
    yield path
    items = (node.items() if isinstance(node, dict)
             else enumerate(node) if isinstance(node, list) else ())
    for key, child in items:
        yield from _json_paths(child, path + (key,))


def _replace(node, path, value):
    if not path:
        return value
    node[path[0]] = _replace(node[path[0]], path[1:], value)
    return node


def test_any_well_checksummed_content_is_loaded_or_classed_corrupt(tmp_path):
    """Replaces one JSON value of state.json or the manifest by another, with
    valid checksums, many times (seeded): load() and backup_info() either
    verify and return consistent arrays, or class the checkpoint as corrupt.
    No other exception ever escapes."""
    print(f"seed {FUZZ_SEED} (set KB_FUZZ_SEED to replay another)")
    rng = np.random.default_rng(FUZZ_SEED)
    d = str(tmp_path / "b")
    newest = two_checkpoints(d)
    pristine = _snapshot(newest)
    outcomes = {"loaded": 0, "corrupt": 0}
    for i in range(300):
        for name, data in pristine.items():
            with open(os.path.join(newest, name), "wb") as f:
                f.write(data)
        fname = "state.json" if rng.random() < 0.7 else "manifest.json"
        doc = json.loads(pristine[fname])
        paths = [p for p in _json_paths(doc) if p[:1] != ("manifest_crc32",)]
        path = paths[rng.integers(len(paths))]
        value = FUZZ_VALUES[rng.integers(len(FUZZ_VALUES))]
        doc = _replace(doc, path, value)
        if fname == "state.json":
            rewrite_checkpoint(newest, state=json.dumps(doc).encode())
        elif isinstance(doc, dict):
            doc.pop("manifest_crc32", None)
            rewrite_checkpoint(newest, manifest=doc)
        else:
            rewrite_checkpoint(newest, raw_manifest=json.dumps(doc).encode())
        case = f"case {i}: {fname} {list(path)} = {value!r}"
        info = backup_info(d)[-1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            arrays, meta, loaded = CheckpointStore(d).load()
        fell_back = any(w.category is CheckpointFallbackWarning for w in caught)
        assert fell_back == (info["verified"] is False), (case, info)
        if fell_back:
            outcomes["corrupt"] += 1
            assert loaded["seq"] == 1 and info["problem"], case
        else:
            outcomes["loaded"] += 1
            assert loaded["seq"] == 2, case
            for name, a in arrays.items():
                assert isinstance(name, str) and isinstance(a, np.ndarray), case
    print(outcomes)
    assert outcomes["loaded"] and outcomes["corrupt"]


# ------------------------------------------------------ the package's parts


def test_store_imports_without_keras():
    out = run_child("""
        print(json.dumps(sorted(m for m in ("keras", "tensorflow", "jax", "torch")
                                if m in sys.modules)))
    """)
    assert out == []


def test_checkpoint_names_are_canonical_and_numeric():
    from kerasbackup.store import checkpoint_name, parse_checkpoint_name
    for seq in (1, 7, 9_999_999_999, 10**10, 12_345_678_901_234):
        name = checkpoint_name(seq)
        assert parse_checkpoint_name(name) == seq
    assert checkpoint_name(7) == "ckpt-0000000007"
    assert checkpoint_name(10**10) == "ckpt-10000000000"
    for other in ("ckpt-7", "ckpt-00000000007", "ckpt-0000000000", "ckpt-000000000x",
                  "ckpt-0000000007 ", "xckpt-0000000007", "ckpt--000000007"):
        assert parse_checkpoint_name(other) is None, other
    names = [checkpoint_name(s) for s in (9_999_999_999, 10**10, 3)]
    assert sorted(names, key=parse_checkpoint_name) == [names[2], names[0], names[1]]


def test_public_inspection_for_tools(tmp_path):
    # The benchmark times a verified read without the lock through these.
    d = tmp_path / "b"
    arrays = sample_arrays()
    with CheckpointStore(d, keep=2) as st:
        st.save(arrays, {"epoch": 0}, 0, 0)
        st.save(arrays, {"epoch": 1}, 1, 3)
    found = kb.list_checkpoints(d)
    assert [s for s, _ in found] == [1, 2]
    ins = kb.inspect_checkpoint(found[-1][1], "load")
    assert isinstance(ins, kb.Inspection) and not ins.problems
    assert ins.verified is True and ins.meta == {"epoch": 1}
    assert_bit_exact(arrays, ins.arrays)
    assert ins.info() == backup_info(d)[-1]
    assert kb.inspect_checkpoint(found[0][1], "structure").verified is None
    _flip(os.path.join(found[0][1], "arrays.bin"))
    bad = kb.inspect_checkpoint(found[0][1])
    assert bad.verified is False and bad.arrays is None
    assert [(p.file, p.kind) for p in bad.problems] == [("arrays.bin", "checksum mismatch")]


def test_phase_names_are_the_documented_ones():
    assert kb.PHASES == ("staging", "arrays_chunk", "arrays_written", "manifest_written",
                         "published", "pruned", "deleting", "deleted", "freed")


def _open_unlinked_under(path):
    """This process's open handles on files under `path` that were unlinked."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (e.g. listdir's own)
        if target.startswith(str(path) + os.sep) and target.endswith(" (deleted)"):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_delete_frees_big_files_off_the_callers_thread(tmp_path):
    # Freeing a big file's blocks is most of a delete's time: delete() keeps
    # it open across the unlink and closes it on a thread of its own.
    d = tmp_path / "b"
    big = {"x": np.arange(HeldFiles.MIN_SIZE // 8 + 1, dtype="f8"), "y": np.ones(3)}
    seen, freed = {}, threading.Event()

    def hook(name, info):
        if name == "deleted":
            seen["held"] = _open_unlinked_under(d)
        elif name == "freed":
            seen["thread"] = threading.current_thread()
            freed.set()

    previous = kb.set_phase_hook(hook)
    try:
        st = CheckpointStore(d, keep=2).open()
        st.save(big, {}, 0, 0)
        st.save(big, {}, 1, 0)
        st.delete()
        assert not d.exists()  # all of it gone when delete() returns
        assert [os.path.basename(t) for t in seen["held"]] == ["arrays.bin (deleted)"] * 2
        assert freed.wait(120)
    finally:
        kb.set_phase_hook(previous)
    assert seen["thread"] is not threading.current_thread()
    assert _open_unlinked_under(d) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_a_delete_that_fails_still_frees_what_it_held(tmp_path):
    d = tmp_path / "b"
    freed = threading.Event()

    def hook(name, info):
        if name == "deleted":
            raise RuntimeError("a failure after the files were unlinked")
        if name == "freed":
            freed.set()

    st = CheckpointStore(d).open()
    st.save({"x": np.zeros(HeldFiles.MIN_SIZE // 8 + 1)}, {}, 0, 0)
    previous = kb.set_phase_hook(hook)
    try:
        with pytest.raises(RuntimeError, match="after the files were unlinked"):
            st.delete()
        assert freed.wait(120)
    finally:
        kb.set_phase_hook(previous)
    assert not st.is_open and not d.exists()
    assert _open_unlinked_under(d) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_held_files_hold_only_big_regular_files(tmp_path):
    (tmp_path / "big").write_bytes(b"\0" * HeldFiles.MIN_SIZE)
    (tmp_path / "small").write_bytes(b"\0" * (HeldFiles.MIN_SIZE - 1))
    os.symlink(tmp_path / "big", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with HeldFiles() as held:
            held.hold("missing", fd)
            for name in ("big", "small", "link", "fifo"):
                held.hold(name, fd)
                os.unlink(name, dir_fd=fd)
            assert len(held) == 1
            assert _open_unlinked_under(tmp_path) == [str(tmp_path / "big") + " (deleted)"]
        assert len(held) == 0 and _open_unlinked_under(tmp_path) == []
    finally:
        os.close(fd)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_a_forked_child_does_not_keep_held_files(tmp_path):
    # A data loader worker forked while a delete's blocks wait to be freed
    # must not keep them in use for its whole life.
    (tmp_path / "big").write_bytes(b"\0" * HeldFiles.MIN_SIZE)
    fd = os.open(tmp_path, os.O_RDONLY)
    r, w = os.pipe()
    with HeldFiles() as held:
        held.hold("big", fd)
        os.unlink("big", dir_fd=fd)
        os.close(fd)
        pid = os.fork()
        if pid == 0:  # the child reports what it holds, then exits at once
            try:
                os.close(r)
                os.write(w, repr(_open_unlinked_under(tmp_path)).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            child_holds = f.read()
        os.waitpid(pid, 0)
        assert len(held) == 1  # the parent's handle is untouched
    assert child_holds == "[]"


def test_delete_after_backup_dir_vanished_is_a_no_op(tmp_path):
    d = tmp_path / "b"
    st = CheckpointStore(d).open()
    st.save({"x": np.zeros(1)}, {}, 0, 0)
    shutil.rmtree(d)
    st.delete()
    assert not st.is_open and not d.exists()


class MemoryFiles:
    """A checkpoint's files held in memory: what another back end would offer."""

    def __init__(self, path, files):
        self.path, self.files = path, files

    def open(self, name):
        from kerasbackup.store.fileio import NotRegularFileError
        if name not in self.files:
            raise FileNotFoundError(errno.ENOENT, "no such object", name)
        data = self.files[name]
        if isinstance(data, str):
            raise NotRegularFileError(name, data)
        f = io.BytesIO(data)
        f.size = len(data)
        f.at_eof = lambda: not f.read(1)
        return f

    def size_bytes(self):
        return sum(len(v) for v in self.files.values() if isinstance(v, bytes))


def test_verification_works_on_any_back_end_files(tmp_path):
    from kerasbackup.store import verify
    arrays = sample_arrays()
    with CheckpointStore(tmp_path / "b") as st:
        path = st.save(arrays, {"epoch": 4}, 4, 2)["path"]
    files = _snapshot(path)
    ins = verify.inspect(MemoryFiles("mem://ckpt", files), 1, verify.LOAD)
    assert ins.verified is True and (ins.epoch, ins.batch) == (4, 2)
    assert_bit_exact(arrays, ins.arrays)
    files["arrays.bin"] = files["arrays.bin"][:-1] + b"\0"
    files["state.json"] = "a FIFO"
    ins = verify.inspect(MemoryFiles("mem://ckpt", files), 1, verify.VERIFY)
    assert [(p.file, p.kind) for p in ins.problems] == [("state.json", "not a regular file")]
    del files["manifest.json"]
    ins = verify.inspect(MemoryFiles("mem://ckpt", files), 1, verify.STRUCTURE)
    assert ins.problem == "manifest.json: manifest unreadable (manifest.json is missing)"


def test_dir_lock_alone(tmp_path):
    from kerasbackup.store.fileio import DirHandle
    from kerasbackup.store.lock import DirLock
    with DirHandle.open(str(tmp_path)) as directory:
        lock = DirLock(directory)
        lock.acquire()
        assert _holder_record(tmp_path)["pid"] == os.getpid()
        lock.check()
        with pytest.raises(BackupLockedError):
            DirLock(directory).acquire()  # flock is per open file: refused here too
        os.rename(tmp_path / ".lock", tmp_path / ".lock-old")
        (tmp_path / ".lock").write_text("")
        with pytest.raises(BackupLockedError, match="lock file .* was removed or replaced"):
            lock.check()
        lock.release()
        assert (tmp_path / ".lock-old").read_text() == ""  # the record was cleared


def test_load_accept_rejects_a_verified_checkpoint_like_a_failed_one(tmp_path):
    d = str(tmp_path / "b")
    newest = two_checkpoints(d)
    seen = []

    def accept(arrays, meta, info):
        seen.append((meta["epoch"], info["path"], sorted(arrays)))
        if meta["epoch"] == 2:
            return [{"file": "state.json", "kind": "invalid content",
                     "detail": "array 'a' does not fit the model"}]
        return None
    with CheckpointStore(d) as st:
        with pytest.warns(CheckpointFallbackWarning, match="does not fit the model"):
            arrays, meta, info = st.load(accept=accept)
        assert meta == {"epoch": 1} and info["seq"] == 1
        assert seen == [(2, newest, ["a", "b", "c"]),
                        (1, os.path.join(d, "ckpt-0000000001"), ["a", "b", "c"])]
        with pytest.raises(CorruptCheckpointError) as ei:
            st.load(accept=lambda *a: [{"file": "state.json", "kind": "invalid content",
                                        "detail": "never fits"}])
        assert [(p["checkpoint"], p["kind"]) for p in ei.value.problems] == [
            (newest, "invalid content"),
            (os.path.join(d, "ckpt-0000000001"), "invalid content")]
        assert st.load(accept=lambda *a: None)[1] == {"epoch": 2}


def test_a_save_takes_the_checksums_it_is_given_as_they_are(tmp_path):
    # saver.HostBuffers.fill() checksums arrays as it copies them; the store
    # then combines those with the others' and does not read them again.
    pytest.importorskip("isal")  # crc32_combine; pinned in requirements.txt
    arrays = {"a": np.arange(4, dtype=np.float64), "b": np.ones((2, 3), np.int32),
              "c": np.array(7, np.int64)}
    right = {"a": zlib.crc32(arrays["a"].tobytes()), "c": zlib.crc32(arrays["c"].tobytes())}
    whole = zlib.crc32(b"".join(a.tobytes() for a in arrays.values()))
    d = str(tmp_path / "b")
    with CheckpointStore(d, keep=3) as st:
        st.save(arrays, {"epoch": 1}, 1, 0)
        st.save(arrays, {"epoch": 2}, 2, 0, checksums=right)
        # A wrong one is written as given (it is never recomputed), so the
        # checkpoint fails verification: proof that it was used.
        st.save(arrays, {"epoch": 3}, 3, 0, checksums={"a": right["a"] ^ 1})
        infos = st.checkpoints(verify=True)
    crcs = []
    for info in infos:
        with open(os.path.join(info["path"], "manifest.json")) as f:
            crcs.append(json.load(f)["files"]["arrays.bin"]["crc32"])
    assert crcs[:2] == [f"{whole:08x}"] * 2 and crcs[2] != crcs[0]
    assert [i["verified"] for i in infos] == [True, True, False]
    assert "arrays.bin" in infos[2]["problem"]


# ------------------------------------------------- the data file's writer
# Big files go by direct I/O through an aligned buffer, small ones and file
# systems without direct I/O through the page cache; every path must write
# exactly the bytes given and their crc32.


def _stream_views(sizes, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, n, dtype=np.uint8) for n in sizes]
    return arrays, [memoryview(a) for a in arrays]


# Layouts: empty, tiny, just under and at the direct-I/O threshold, and
# several chunks with array boundaries inside chunks and an unaligned tail.
LAYOUTS = {
    "empty": [],
    "tiny": [1, 0, 7],
    "below direct": [DIRECT_MIN - 1],
    "at direct": [DIRECT_MIN],
    "chunks, unaligned": [3, DIRECT_CHUNK - 5, ALIGN + 1, DIRECT_CHUNK, 2 * ALIGN - 3, 11],
    "chunks, aligned": [DIRECT_CHUNK, DIRECT_CHUNK],
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_write_stream_writes_exact_bytes_and_crc(tmp_path, layout):
    sizes = LAYOUTS[layout]
    print(f"sizes {sizes}, seed 7")
    arrays, views = _stream_views(sizes, 7)
    expected = b"".join(a.tobytes() for a in arrays)
    progress = []
    dfd = os.open(tmp_path, os.O_RDONLY)
    try:
        fd = create_file("data", dfd)
        try:
            size, crc = write_stream(fd, views, lambda w, t: progress.append((w, t)))
            # The descriptor is left as opened: no O_DIRECT for what follows.
            assert not fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        os.close(dfd)
    data = (tmp_path / "data").read_bytes()
    assert size == len(expected) and crc == zlib.crc32(expected)
    assert data == expected
    # Progress grows to the total, one call per chunk written.
    written = [w for w, _ in progress]
    assert written == sorted(written) and all(t == len(expected) for _, t in progress)
    assert written[-1:] == ([len(expected)] if expected else [])


# Arrays in one page-aligned block (as saver.HostBuffers lays out a
# background save's copies), mixed with arrays of their own: the block goes
# to direct I/O as one view, without a copy; the bytes are those of the table.
BLOCK_LAYOUTS = {
    "block only": ([DIRECT_CHUNK + 5, 3, ALIGN - 1, DIRECT_CHUNK], []),
    "block, then own arrays": ([2 * DIRECT_CHUNK, 8, 1], [ALIGN + 3, 17]),
    "own arrays, then block": ([DIRECT_CHUNK, 3 * ALIGN], [5]),
}


@pytest.mark.parametrize("layout", sorted(BLOCK_LAYOUTS))
def test_arrays_in_one_block_are_written_as_one_view(tmp_path, layout):
    in_block, own = BLOCK_LAYOUTS[layout]
    seed = 11
    print(f"block {in_block}, own {own}, seed {seed}")
    rng = np.random.default_rng(seed)
    buffers = HostBuffers()
    names = [f"b{i}" for i in range(len(in_block))]
    block = buffers.reserve([(n, (k,), np.uint8) for n, k in zip(names, in_block)])
    for a in block:
        a[:] = rng.integers(0, 256, a.size, dtype=np.uint8)
    others = {f"o{i}": rng.integers(0, 256, k, dtype=np.uint8) for i, k in enumerate(own)}
    arrays = (dict(zip(names, block)) | others if layout != "own arrays, then block"
              else others | dict(zip(names, block)))
    table, views, total, crc = prepare_arrays(arrays)
    assert crc is None  # no checksums given: the writer takes it
    expected = b"".join(np.asarray(a).tobytes() for a in arrays.values())
    assert total == len(expected)
    # Checksums the caller took (HostBuffers.fill) for the block's arrays:
    # the others are read, and the whole file's crc32 comes out.
    known = {n: zlib.crc32(np.asarray(arrays[n]).tobytes()) for n in names}
    assert prepare_arrays(arrays, known)[3] == zlib.crc32(expected)
    assert len(views) == 1 + len(own)  # the block's arrays joined into one view
    block_view = views[0] if layout != "own arrays, then block" else views[-1]
    assert len(block_view) == sum(in_block) and address_of(block_view) % ALIGN == 0
    dfd = os.open(tmp_path, os.O_RDONLY)
    try:
        fd = create_file("data", dfd)
        try:
            size, crc = write_stream(fd, views)
            os.fsync(fd)
        finally:
            os.close(fd)
        fd = create_file("again", dfd)
        try:
            assert write_stream(fd, views, checksum=False) == (len(expected), None)
        finally:
            os.close(fd)
    finally:
        os.close(dfd)
    assert (tmp_path / "data").read_bytes() == expected
    assert (tmp_path / "again").read_bytes() == expected
    assert (size, crc) == (len(expected), zlib.crc32(expected))
    # The same layout again reuses the block; another one gets a new block.
    assert [a.ctypes.data for a in buffers.reserve(
        [(n, (k,), np.uint8) for n, k in zip(names, in_block)])] == [a.ctypes.data for a in block]
    moved = buffers.reserve([(n, (k + 1,), np.uint8) for n, k in zip(names, in_block)])
    assert moved[0].ctypes.data != block[0].ctypes.data
    assert moved[0].ctypes.data % ALIGN == 0


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
def test_rows_of_an_ndarray_subclass_keep_their_bytes():
    # np.matrix rows are views of one matrix lying back to back; the matrix
    # stays 2-d when reshaped, so they must not be joined through it.
    m = np.matrix(np.arange(12, dtype=np.float32).reshape(3, 4)).copy()  # owns its data
    arrays = {"a": m[0], "b": m[1], "c": m[2]}
    _, views, total, _ = prepare_arrays(arrays)
    expected = b"".join(np.asarray(a).tobytes() for a in arrays.values())
    assert total == len(expected) and b"".join(bytes(v) for v in views) == expected
    # Flat byte views: the writers take len() as the byte count.
    assert all(v.ndim == 1 and v.itemsize == 1 for v in views)
    assert sum(len(v) for v in views) == total


def test_save_and_load_across_direct_chunks(tmp_path):
    # A checkpoint whose arrays.bin spans several direct-I/O chunks and ends
    # unaligned loads bit-exact and verifies.
    rng = np.random.default_rng(3)
    print("seed 3")
    arrays = {"a": rng.standard_normal(DIRECT_CHUNK // 8 + 3),
              "b": rng.integers(0, 2**31, (DIRECT_CHUNK // 4 + 5,), dtype=np.int32),
              "c": np.float32(1.5), "d": np.arange(3, dtype=np.int64)}
    with CheckpointStore(tmp_path / "b") as st:
        st.save(arrays, {"k": 1}, 0, 0)
        got, meta, _ = st.load()
    assert_bit_exact(arrays, got)
    assert backup_info(tmp_path / "b")[0]["verified"] is True


NO_DIRECT_IO = """
    import subprocess
    d = sys.argv[1]
    # ramfs has no direct I/O: the store falls back to the page cache.
    subprocess.run(["mount", "-t", "ramfs", "ramfs", d], check=True)
    from kerasbackup.store.fileio import DIRECT_CHUNK
    rng = np.random.default_rng(5)
    a = rng.standard_normal(DIRECT_CHUNK // 8 + 7)
    with store.CheckpointStore(d, keep=1) as st:
        st.save({"a": a}, {"e": 0}, 0, 0)
        got, meta, info = st.load()
    print(json.dumps({"same": bool((got["a"] == a).all()) and got["a"].dtype == a.dtype,
                      "verified": store.backup_info(d)[0]["verified"]}))
"""


def test_file_system_without_direct_io(tmp_path):
    prefix, reason = _mount_namespace()
    if reason:
        pytest.skip(f"mounting a ramfs needs a mount namespace: {reason}")
    d = tmp_path / "b"
    d.mkdir()
    out = run_child(NO_DIRECT_IO, d, prefix=prefix)
    assert out == {"same": True, "verified": True}


# A checkpoint written with one crc32 implementation verifies with the
# other: isal's (pinned) and zlib's (the fallback) give the same values.
CRC_WRITE_AND_CHECK = """
    from kerasbackup.store.fileio import CRC32_IMPL, DIRECT_CHUNK
    d, write = sys.argv[1], sys.argv[2] == "write"
    rng = np.random.default_rng(11)
    a = rng.standard_normal(DIRECT_CHUNK // 8 + 7)  # direct I/O, unaligned tail
    if write:
        with store.CheckpointStore(d, keep=1) as st:
            st.save({"a": a}, {"e": 0}, 0, 0)
    info = store.backup_info(d)[0]
    with store.CheckpointStore(d, keep=1) as st:
        got, _, _ = st.load()
    print(json.dumps({"impl": CRC32_IMPL, "verified": info["verified"],
                      "same": bool((got["a"] == a).all())}))
"""


def test_crc32_implementations_agree(tmp_path):
    pytest.importorskip("isal", reason="isal (pinned in requirements.txt) is not installed")
    print("seed 11")
    without_isal = ["-c", "import sys; sys.modules['isal'] = None; "
                    "exec(sys.stdin.read())"]

    def child(d, mode, isal):
        code = CHILD_PRELUDE + textwrap.dedent(CRC_WRITE_AND_CHECK)
        args = ["-c", code] if isal else without_isal
        proc = subprocess.run([sys.executable, *args, str(d), mode], capture_output=True,
                              text=True, timeout=60, input=None if isal else code)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    for writer, reader in (("zlib", "isal"), ("isal", "zlib")):
        d = tmp_path / writer
        wrote = child(d, "write", writer == "isal")
        read = child(d, "check", reader == "isal")
        assert (wrote["impl"], read["impl"]) == (writer, reader)
        assert wrote["verified"] is read["verified"] is True and read["same"]
    # And directly, on pieces and with a running value.
    from isal import isal_zlib
    data = np.random.default_rng(11).integers(0, 256, 3 * ALIGN + 5, dtype=np.uint8)
    for start in (0, 1, 0xFFFFFFFF):
        for piece in (b"", data[:1], data[7:], data):
            assert isal_zlib.crc32(piece, start) == zlib.crc32(piece, start)
