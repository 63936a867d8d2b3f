"""The driver hands train_step() the same `data` structure as Keras' fit()."""

import numpy as np
import pytest
import tensorflow as tf

import keras
import kerasbackup


def _structure(value):
    if isinstance(value, (tuple, list)):
        return type(value).__name__, [_structure(v) for v in value]
    if isinstance(value, dict):
        return "dict", sorted(value)
    return "tensor" if value is not None else "None"


class Recording(keras.Model):
    """Records the structure of each `data` its train_step() gets (at tracing)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)
        self.seen = []

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        self.seen.append(_structure(data))
        x = data[0] if isinstance(data, tuple) else data
        return {"out": keras.ops.sum(self(x))}


def _seen(run):
    model = Recording()
    model.compile(optimizer="sgd")  # train_step() above computes no loss
    run(model)
    return model.seen[0]


X = np.ones((8, 3), "float32")
Y = np.ones((8, 1), "float32")
W = np.ones((8,), "float32")


@pytest.mark.parametrize("kwargs", [
    {"x": X},
    {"x": X, "y": Y},
    {"x": X, "y": Y, "sample_weight": W},
])
def test_arrays(kwargs):
    keras_way = _seen(lambda m: m.fit(batch_size=4, epochs=1, verbose=0, **kwargs))
    ours = _seen(lambda m: kerasbackup.fit(m, batch_size=4, epochs=1, verbose=0,
                                           **kwargs))
    assert ours == keras_way


@pytest.mark.parametrize("elements", [X, (X, Y)], ids=["x", "x_y"])
def test_datasets(elements):
    def data():
        return tf.data.Dataset.from_tensor_slices(elements).batch(4)

    keras_way = _seen(lambda m: m.fit(data(), epochs=1, verbose=0))
    ours = _seen(lambda m: kerasbackup.fit(m, data(), epochs=1, verbose=0))
    assert ours == keras_way
