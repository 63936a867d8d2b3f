"""A learning-rate schedule without get_config() (as R code often writes
them) does not stop a backed-up fit(); a changed schedule is still caught."""

import keras

from kerasbackup import state


class Halving(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, initial, every):
        self.initial = initial
        self.every = every

    def __call__(self, step):
        return self.initial * 0.5 ** keras.ops.floor(step / self.every)


def _model(schedule):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    return model


def test_fingerprint_describes_a_schedule_without_config():
    items = state.fingerprint(_model(Halving(0.1, 10)))
    assert "Halving" in items["optimizer learning_rate"]
    assert '"every": 10' in items["optimizer learning_rate"]
    changed = state.fingerprint(_model(Halving(0.1, 20)))
    diffs = state.compare_fingerprints(items, changed)
    assert [d[0] for d in diffs] == ["optimizer learning_rate"]
