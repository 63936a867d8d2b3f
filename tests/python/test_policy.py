"""When saves fall due: batches are counted as Keras counts them, also under
`steps_per_execution`, where Keras calls the batch hooks once per execution."""

import os
import warnings

import pytest

import kerasbackup
from kerasbackup import BackupAndRestore, SavePolicy
from kerasbackup.store import backup_info

import helpers_training as ht


def _due(policy, epochs, steps, spe):
    """Drives a policy as Keras' hooks would; returns the (epoch, batches) of due saves."""
    due = []
    for epoch in range(epochs):
        policy.epoch_begin()
        for end in range(spe - 1, steps + spe - 1, spe):
            end = min(end, steps - 1)
            if policy.batch_end(end):
                due.append((epoch, end + 1))
        if policy.epoch_end():
            due.append((epoch + 1, 0))
    return due


@pytest.mark.parametrize("spe", [1, 2, 3, 7])
def test_every_n_batches_counts_batches_not_hook_calls(spe):
    # 10 batches per epoch, a save due every 4 batches: at the first
    # execution end at or after each 4th batch since the last save.
    due = _due(SavePolicy(4), epochs=2, steps=10, spe=spe)
    expected = {
        1: [(0, 4), (0, 8), (1, 2), (1, 6), (1, 10)],
        2: [(0, 4), (0, 8), (1, 2), (1, 6), (1, 10)],
        3: [(0, 6), (0, 10), (1, 6), (1, 10)],
        7: [(0, 7), (1, 7)],
    }[spe]
    assert due == expected


def test_epoch_and_false():
    assert _due(SavePolicy("epoch"), 2, 5, 1) == [(1, 0), (2, 0)]
    assert _due(SavePolicy(False), 2, 5, 1) == []


def test_a_restored_count_carries_on():
    policy = SavePolicy(4)
    policy.start(batches_in_epoch=3, batches_since_save=3)
    policy.epoch_begin(resumed_batches=3)
    assert policy.batch_end(3)  # the 4th batch since the save
    assert policy.batches_since_save == 0


def _saves_seen():
    seen = []

    def hook(phase, info):
        if phase == "published":
            (c,) = [c for c in backup_info(info["backup_dir"], verify=False)
                    if c["path"] == info["path"]]
            seen.append((c["epoch"], c["batch"]))

    return seen, hook


def test_model_fit_with_steps_per_execution_saves_every_n_batches(tmp_path):
    x, y = ht.make_data(80)  # 10 batches of 8
    model = ht.make_model()
    model.compile(optimizer="adam", loss="mse", steps_per_execution=3)
    seen, hook = _saves_seen()
    with ht.phase_hook(hook):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
                  callbacks=[BackupAndRestore(str(tmp_path / "b"), save_freq=4,
                                              delete_checkpoint=False)])
    # A save due after an epoch's last batch is taken at that epoch's end
    # under model.fit() (it cannot resume between the two): (e + 1, 0).
    assert seen == [(0, 6), (1, 0), (1, 6), (2, 0)]


def test_model_fit_with_steps_per_execution_resumes_after_the_saved_batches(tmp_path):
    x, y = ht.make_data(80)
    d = str(tmp_path / "b")
    backup = BackupAndRestore(d, save_freq=3)

    def model_with_spe():
        model = ht.make_model()
        model.compile(optimizer="adam", loss="mse", steps_per_execution=3)
        return model

    model = model_with_spe()
    with pytest.raises(ht.Interrupted):
        # Under steps_per_execution=3 the batch hooks see batches 0, 3, 6, 9.
        model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                  callbacks=[ht.interrupter([(1, 6)]), backup])
    model = model_with_spe()
    with warnings.catch_warnings():
        warnings.simplefilter("error", kerasbackup.ResumeWarning)  # exact: none
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[backup])
    # Epoch 2's first 6 batches were done and saved: not trained again.
    assert int(model.optimizer.iterations.numpy()) == 3 * 10
    assert model.history.epoch == [0, 1, 2]
    assert not os.path.exists(d)
