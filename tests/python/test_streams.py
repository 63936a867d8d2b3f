"""Data sources that cannot be rewound: tf.data and Python iterables.

They resume at the right epoch and batch count, with one warning that the
order is not reproduced."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import keras
import kerasbackup
from kerasbackup import BackupAndRestore, ResumeWarning

from helpers_training import make_data, make_model


class Stop(Exception):
    pass


class StopAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise Stop()


def dataset():
    x, y = make_data(40)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # 5 batches


class Batches(keras.utils.PyDataset):
    def __init__(self):
        super().__init__()
        self.x, self.y = make_data(40)

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return self.x[i * 8:(i + 1) * 8], self.y[i * 8:(i + 1) * 8]


@pytest.mark.parametrize("source", [dataset, Batches], ids=["tf.data", "PyDataset"])
def test_stream_resumes_at_the_right_epoch_and_batch_count(tmp_path, source):
    backup = str(tmp_path / "b")
    model = make_model()
    with pytest.raises(Stop):
        kerasbackup.fit(model, source(), epochs=3, verbose=0,
                        callbacks=[BackupAndRestore(backup, save_freq=2),
                                   StopAt(7)])
    info = kerasbackup.backup_info(backup)
    assert [(c["epoch"], c["batch"]) for c in info] == [(1, 1)]  # 6 steps done

    model = make_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = kerasbackup.fit(model, source(), epochs=3, verbose=0,
                                  callbacks=[BackupAndRestore(backup, save_freq=2)])
    resume_warnings = [w for w in caught if issubclass(w.category, ResumeWarning)]
    assert len(resume_warnings) == 1
    assert "order of the batches is not the one" in str(resume_warnings[0].message)
    # 15 steps in all: 6 restored + the 4 left of epoch 2 + 5 of epoch 3.
    assert int(model.optimizer.iterations.numpy()) == 15
    assert history.epoch == [0, 1, 2]
    assert all(len(v) == 3 for v in history.history.values())


def test_array_data_needs_no_warning(tmp_path):
    backup = str(tmp_path / "b")
    x, y = make_data(40)
    model = make_model()
    with pytest.raises(Stop):
        kerasbackup.fit(model, x, y, batch_size=8, epochs=3, verbose=0,
                        callbacks=[BackupAndRestore(backup, save_freq=2), StopAt(7)])
    model = make_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        kerasbackup.fit(model, x, y, batch_size=8, epochs=3, verbose=0,
                        callbacks=[BackupAndRestore(backup, save_freq=2)])
    assert int(model.optimizer.iterations.numpy()) == 15
