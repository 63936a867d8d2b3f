"""The callback with its backup_dir on moto's S3 server and on fake-gcs-server.

Both servers are started on 127.0.0.1 by these tests and stopped afterwards
(objservers.serving). Each case trains the small model of helpers_training
with kerasbackup.fit(), interrupted and resumed as a restarted job would be,
and compares the end state bit for bit with an uninterrupted run whose
backup_dir is a local directory.
"""

import json
import os
import tempfile
import threading
import time
import warnings

import pytest

import keras

import kerasbackup
from kerasbackup import errors
from kerasbackup.store import format as fmt
from kerasbackup.store import lease, objclient, set_phase_hook
from kerasbackup.testing import PauseSave

import helpers_training as ht
from objservers import server, url  # noqa: F401 (fixtures)

X, Y = ht.make_data(70)  # 7 batches of 8 per epoch
# Saves every 2 batches, in the background; EarlyStopping and
# ReduceLROnPlateau change state along the way.
CONFIG = dict(save_freq=2, async_save=True, schedule=False, early_stopping=10,
              reduce_lr=True)
NO_WAIT = {"lease_wait": 0}
_REFERENCE = {}


def reference(**config):
    """The uninterrupted run with a local backup_dir, computed once per configuration."""
    key = tuple(sorted(config.items()))
    if key not in _REFERENCE:
        with tempfile.TemporaryDirectory() as d:
            snap, restarts, _ = ht.run_resumable(os.path.join(d, "b"), X, Y, **config)
        assert restarts == 0
        _REFERENCE[key] = snap
    return _REFERENCE[key]




def of(caught, category):
    return [w for w in caught if issubclass(w.category, category)]


def newest_object(url, name):
    """(raw client, object name) of file `name` of the newest committed checkpoint."""
    raw = objclient.open_client(url)
    newest = kerasbackup.backup_info(url, verify=False)[-1]
    manifest = fmt.parse_manifest(raw.read(newest["path"].rsplit("/", 1)[1])[0])
    return raw, f"{manifest.extra['objects']}/{name}"


def overwrite(url, name, change):
    """Replaces an object of the newest checkpoint behind the store's back."""
    raw, key = newest_object(url, name)
    data, token = raw.read(key)
    raw.replace(key, change(bytearray(data)), token)


def flip_middle_byte(data):
    data[len(data) // 2] ^= 0x01
    return bytes(data)


def test_fit_interrupted_three_times_and_resumed_is_bit_identical(url):
    expected = reference(**CONFIG)
    actual, restarts, caught = ht.run_resumable(
        url, X, Y, [(0, 3), (2, "end"), (3, 6)], backup_args=NO_WAIT, **CONFIG)
    assert restarts == 3
    ht.assert_same(actual, expected)
    assert not of(caught, errors.CheckpointFallbackWarning)
    assert not of(caught, kerasbackup.ResumeWarning)
    # delete_checkpoint=True: once training completed, no object of ours is left.
    assert objclient.open_client(url).list() == {}


def test_uploads_run_on_the_saver_thread_while_training_goes_on(url, tmp_path):
    """A save held in the middle of its upload does not hold training up."""
    marker, release = tmp_path / "held", tmp_path / "go"
    deadline = time.monotonic() + 300  # only a guard: a deadlock fails, not hangs
    pause = PauseSave(marker, release, saves=[1], phase="part_uploaded",
                      cancelled=lambda: time.monotonic() > deadline)
    threads = set()
    backup = kerasbackup.BackupAndRestore(url, save_freq=2, lease_wait=0)

    class Release(keras.callbacks.Callback):
        batches_while_held = 0

        def on_train_batch_end(self, batch, logs=None):
            if backup.saver is not None and backup.saver.in_flight and not release.exists():
                ht.wait_for(marker.exists, what="the held upload")
                Release.batches_while_held += 1  # training is here, the upload there
                release.touch()

    def hook(phase, info):
        if phase in ("staging", "part_uploaded", "published"):
            threads.add(threading.current_thread().name)
        pause(phase, info)

    model = ht.make_model()
    with ht.phase_hook(hook):
        kerasbackup.fit(model, X, Y, batch_size=8, epochs=2, verbose=0,
                        callbacks=[Release(), backup])
    assert pause.held == [1] and Release.batches_while_held == 1
    assert threads == {"kerasbackup-save"}


def test_damaged_newest_checkpoint_falls_back_and_still_ends_identical(url):
    expected = reference(**CONFIG)
    damaged = []

    def damage(error):
        overwrite(url, fmt.ARRAYS_NAME, flip_middle_byte)
        damaged.append(kerasbackup.backup_info(url))

    actual, restarts, caught = ht.run_resumable(
        url, X, Y, [(3, 1)], on_stop=damage,
        backup_args=dict(double_checkpoint=True, lease_wait=0), **CONFIG)
    assert restarts == 1
    assert [i["verified"] for i in damaged[0]] == [True, False]
    assert "checksum mismatch" in damaged[0][1]["problem"]
    fallback = of(caught, errors.CheckpointFallbackWarning)
    assert len(fallback) == 1 and "checksum mismatch" in str(fallback[0].message)
    ht.assert_same(actual, expected)


def test_object_overwritten_behind_our_back_is_detected_at_train_begin(url):
    with pytest.raises(ht.Interrupted):
        ht.run_resumable(url, X, Y, [(1, 3)], catch=(), backup_args=NO_WAIT,
                         **CONFIG)
    overwrite(url, fmt.STATE_NAME, lambda data: b"{" + bytes(len(data) - 1))
    model = ht.make_model(schedule=False)
    with pytest.raises(errors.CorruptCheckpointError) as err:
        kerasbackup.fit(model, X, Y, batch_size=8, epochs=5, verbose=0,
                        callbacks=[kerasbackup.BackupAndRestore(url, lease_wait=0)])
    (problem,) = err.value.problems
    assert (problem["file"], problem["kind"]) == ("state.json", "checksum mismatch")
    assert url in str(err.value)
    # Nothing was deleted: the objects stay for inspection.
    assert kerasbackup.backup_info(url)[-1]["verified"] is False


def test_fingerprint_is_checked(url):
    with pytest.raises(ht.Interrupted):
        ht.run_resumable(url, X, Y, [(1, 3)], catch=(), backup_args=NO_WAIT,
                         **CONFIG)
    model = ht.make_model(schedule=False)
    with pytest.raises(kerasbackup.FingerprintMismatchError) as err:
        kerasbackup.fit(model, X, Y, batch_size=4, epochs=5, verbose=0,
                        validation_split=0.2,
                        callbacks=[kerasbackup.BackupAndRestore(url, lease_wait=0)])
    assert ("batch size", 8, 4) in err.value.differences
    assert url in str(err.value)
    assert [i["verified"] for i in kerasbackup.backup_info(url)] == [True]


def test_second_writer_is_locked_out(url):
    from kerasbackup.store import open_store

    with open_store(url) as holder:
        for wait in (0, 0.2):  # a live lease is renewed: waiting does not help
            model = ht.make_model()
            with pytest.raises(errors.BackupLockedError) as err:
                kerasbackup.fit(model, X, Y, batch_size=8, epochs=1, verbose=0,
                                callbacks=[kerasbackup.BackupAndRestore(
                                    url, lease_wait=wait)])
            assert err.value.holder["pid"] == os.getpid()
        assert holder.is_open


def test_restarted_job_waits_out_the_lease_of_a_writer_killed_elsewhere(url, capsys):
    """With the default lease_wait, a rerun outlasts a dead writer's lease instead of failing.

    The lease is live when the run first looks; the phase hook then makes it
    expire (as time would), so nothing here depends on how long fit() takes.
    """
    raw = objclient.open_client(url)
    body = {"format": lease.LEASE_FORMAT, "token": "e" * 32, "ttl": 60.0, "count": 3,
            "holder": {"pid": 4242, "host": "node-7.invalid", "started": "then"},
            "renewed": "then", "expires_at": time.time() + 3600, "expires": "later"}
    raw.create(lease.LEASE_NAME, json.dumps(body).encode())
    waited = []

    def expire_it(name, info):
        if name == "lease_waiting":
            waited.append(info["backup_dir"])
            _, etag = raw.read(lease.LEASE_NAME)
            raw.replace(lease.LEASE_NAME, json.dumps(
                dict(body, expires_at=time.time() - 1, expires="just now")).encode(), etag)

    model = ht.make_model()
    set_phase_hook(expire_it)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kerasbackup.fit(model, X, Y, batch_size=8, epochs=1, verbose=0,
                            callbacks=[kerasbackup.BackupAndRestore(url)])
    finally:
        set_phase_hook(None)
    assert len(waited) == 1
    took_over = of(caught, errors.StaleLockWarning)
    assert len(took_over) == 1 and "node-7.invalid" in str(took_over[0].message)
    assert "is leased by pid 4242 on host node-7.invalid" in capsys.readouterr().err


@pytest.mark.parametrize("server", ["s3"], indirect=True)
def test_server_stopped_mid_save_then_restarted(server, url):
    """The save fails, classed and clear; the previous checkpoint stays; a rerun ends identical."""
    expected = reference(**CONFIG)
    saves, stops = [0], []

    def stop_at_third_save(phase, info):
        if phase == "part_uploaded":
            saves[0] += 1
            if saves[0] == 3 and not stops:
                stops.append(kerasbackup.backup_info(url))  # what was committed
                server.stop()

    def restart(error):
        assert isinstance(error, errors.BackupWriteError), error
        text = str(error)
        assert url in text and "previous checkpoint" in text
        assert "Connect" in text, text  # the connection error is named
        server.start()

    with ht.phase_hook(stop_at_third_save):
        actual, restarts, caught = ht.run_resumable(
            url, X, Y, catch=(ht.Interrupted, errors.BackupWriteError),
            on_stop=restart, backup_args=NO_WAIT, **CONFIG)
    assert restarts == 1 and len(stops) == 1
    assert [(i["epoch"], i["batch"]) for i in stops[0]] == [(0, 4)]
    # The rerun took over the lease the failed run could not delete.
    assert len(of(caught, errors.StaleLockWarning)) == 1
    ht.assert_same(actual, expected)
