"""State held outside model.optimizer, and models built lazily.

A GAN's custom train_step() keeps its own optimizers as attributes
(`self.d_optimizer`, `self.g_optimizer`), built at their first
apply_gradients(). An interrupted and resumed fit() must still end
bit-identical to an uninterrupted one: weights, seed generator, both
optimizers (slots and iterations) and History. A model whose layers are
still unbuilt when fit() starts cannot be restored into: it gets a clear
UnbuiltStateError before any training.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

import keras

import kerasbackup
from kerasbackup import state as training_state
from kerasbackup.errors import FingerprintMismatchError, UnbuiltStateError

import helpers_training as ht

LATENT = 3
FEATURES = 4
X = np.random.default_rng(0).standard_normal((40, FEATURES)).astype("float32")


class GAN(keras.Model):
    """Keras' GAN recipe in miniature: two parts, two optimizers, no call()."""

    def __init__(self, discriminator, generator, **kwargs):
        super().__init__(**kwargs)
        self.discriminator = discriminator
        self.generator = generator
        self.seed_generator = keras.random.SeedGenerator(5)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn

    def train_step(self, real):
        n = tf.shape(real)[0]
        z = keras.random.normal((n, LATENT), seed=self.seed_generator)
        images = tf.concat([self.generator(z), real], 0)
        labels = tf.concat([tf.ones((n, 1)), tf.zeros((n, 1))], 0)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(images))
        weights = self.discriminator.trainable_weights
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, weights), weights))
        z = keras.random.normal((n, LATENT), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            g_loss = self.loss_fn(tf.zeros((n, 1)),
                                  self.discriminator(self.generator(z)))
        weights = self.generator.trainable_weights
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, weights), weights))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {m.name: m.result() for m in self.metrics}


def make_gan(built=True, g_optimizer=True):
    keras.utils.set_random_seed(1)
    d_layers = [keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    g_layers = [keras.layers.Dense(FEATURES)]
    if built:
        d_layers.insert(0, keras.Input((FEATURES,)))
        g_layers.insert(0, keras.Input((LATENT,)))
    gan = GAN(keras.Sequential(d_layers), keras.Sequential(g_layers))
    gan.compile(keras.optimizers.Adam(0.01),
                keras.optimizers.SGD(0.05, momentum=0.9),
                keras.losses.BinaryCrossentropy(from_logits=True))
    if not g_optimizer:
        del gan.g_optimizer  # a script that no longer has it
    return gan


def gan_state(gan):
    return {
        "model": [np.array(v.numpy()) for v in gan.variables],
        "d_optimizer": [np.array(v.numpy()) for v in gan.d_optimizer.variables],
        "g_optimizer": [np.array(v.numpy()) for v in gan.g_optimizer.variables],
        "history": {k: list(v) for k, v in gan.history.history.items()},
    }


def assert_same_state(actual, expected):
    assert sorted(actual) == sorted(expected)
    for key in ("model", "d_optimizer", "g_optimizer"):
        assert len(actual[key]) == len(expected[key]), key
        for i, (a, e) in enumerate(zip(actual[key], expected[key])):
            assert a.dtype == e.dtype and np.array_equal(a, e), f"{key} variable {i}"
    assert actual["history"] == expected["history"]


def train_gan(backup_dir, points=(), epochs=3, use_driver=True):
    """Trains a fresh GAN until done, running the "script" again after each stop."""
    stopper = ht.interrupter(points)
    for _ in range(len(points) + 1):
        gan = make_gan()
        callbacks = [stopper, kerasbackup.BackupAndRestore(backup_dir, save_freq=3)]
        try:
            if use_driver:
                kerasbackup.fit(gan, X, batch_size=8, epochs=epochs, verbose=0,
                                callbacks=callbacks)
            else:
                gan.fit(X, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
                        callbacks=callbacks)
            return gan
        except ht.Interrupted:
            pass
    raise AssertionError("training did not complete")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    gan = train_gan(str(tmp_path_factory.mktemp("ref") / "b"))
    return gan_state(gan)


def test_attribute_optimizers_are_found_and_named_by_attribute():
    gan = make_gan()
    found = training_state.attribute_optimizers(gan)
    assert [g for g, _ in found] == ["optimizer:d_optimizer", "optimizer:g_optimizer"]
    assert found[0][1] is gan.d_optimizer and found[1][1] is gan.g_optimizer


def test_gan_with_optimizer_attributes_resumes_exactly(reference, tmp_path):
    d = str(tmp_path / "b")
    # 5 batches an epoch, a save every 3: the stop at epoch 1, batch 3 resumes
    # from the save after epoch 1's first batch, mid-epoch.
    gan = train_gan(d, points=[(1, 3)])
    actual = gan_state(gan)
    assert_same_state(actual, reference)
    # Both optimizers did train, and were built before the resumed run's first step.
    assert int(gan.d_optimizer.iterations.numpy()) == 15
    assert int(gan.g_optimizer.iterations.numpy()) == 15
    assert not os.path.exists(d)


def test_checkpoint_holds_each_optimizer_and_its_targets(tmp_path):
    d = str(tmp_path / "b")
    stopper = ht.interrupter([(1, 0)])
    gan = make_gan()
    with pytest.raises(ht.Interrupted):
        kerasbackup.fit(gan, X, batch_size=8, epochs=3, verbose=0,
                        callbacks=[stopper, kerasbackup.BackupAndRestore(d)])
    with kerasbackup.CheckpointStore(d) as store:
        arrays, meta, _ = store.load(required=True)
    positions = {id(v): i for i, v in enumerate(gan.variables)}
    assert meta["optimizer_targets"] == {
        "optimizer:d_optimizer": [positions[id(v)] for v in gan.discriminator.trainable_weights],
        "optimizer:g_optimizer": [positions[id(v)] for v in gan.generator.trainable_weights],
    }
    for group, opt in (("optimizer:d_optimizer", gan.d_optimizer),
                       ("optimizer:g_optimizer", gan.g_optimizer)):
        assert len(meta["variables"][group]) == len(opt.variables)
        for i, v in enumerate(opt.variables):
            assert np.array_equal(arrays[f"{group}/{i:05d}"], v.numpy())


def test_a_resume_without_the_optimizer_attribute_is_another_setup(tmp_path):
    d = str(tmp_path / "b")
    with pytest.raises(ht.Interrupted):
        kerasbackup.fit(make_gan(), X, batch_size=8, epochs=3, verbose=0,
                        callbacks=[ht.interrupter([(1, 0)]),
                                   kerasbackup.BackupAndRestore(d)])
    with pytest.raises(FingerprintMismatchError, match="optimizer:g_optimizer"):
        kerasbackup.fit(make_gan(g_optimizer=False), X, batch_size=8, epochs=3,
                        verbose=0, callbacks=[kerasbackup.BackupAndRestore(d)])


def test_optimizer_built_for_variables_outside_the_model_is_a_clear_error():
    gan = make_gan()
    with pytest.raises(UnbuiltStateError, match="`d_optimizer`.*not the model's"):
        training_state.build_attribute_optimizers(
            gan, {"optimizer:d_optimizer": [0, None]})
    assert not gan.d_optimizer.built


def test_optimizer_targets_beyond_the_model_are_invalid_content():
    gan = make_gan()
    problems = training_state.build_attribute_optimizers(
        gan, {"optimizer:g_optimizer": [0, 99]})
    assert problems and "99" in problems[0]
    assert not gan.g_optimizer.built


@pytest.mark.parametrize("use_driver", [True, False], ids=["driver", "model.fit"])
def test_unbuilt_parts_are_refused_before_training(tmp_path, use_driver):
    gan = make_gan(built=False)
    fit = kerasbackup.fit if use_driver else type(gan).fit
    with pytest.raises(UnbuiltStateError, match=r"not built yet \(.*sequential") as e:
        fit(gan, X, batch_size=8, epochs=1, verbose=0,
            callbacks=[kerasbackup.BackupAndRestore(str(tmp_path / "b"))])
    assert ("input shape" if use_driver else "batch") in str(e.value)
    assert int(gan.d_optimizer.iterations.numpy()) == 0  # nothing trained
    assert not os.path.exists(tmp_path / "b" / "ckpt-0000000001")


class Lazy(keras.Model):
    """A subclassed model whose layers create their variables at first call."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.drop = keras.layers.Dropout(0.2)
        self.out = keras.layers.Dense(1)

    def call(self, x, training=False):
        return self.out(self.drop(self.hidden(x), training=training))


def test_lazily_built_subclassed_model_resumes_exactly(tmp_path):
    y = X[:, :1] - X[:, 1:2]

    def run(d, points=()):
        stopper = ht.interrupter(points)
        for _ in range(len(points) + 1):
            keras.utils.set_random_seed(2)
            model = Lazy()
            model.compile(keras.optimizers.Adam(0.01), "mse")
            assert not model.built
            try:
                kerasbackup.fit(model, X, y, batch_size=8, epochs=3, verbose=0,
                                callbacks=[stopper, kerasbackup.BackupAndRestore(
                                    d, save_freq=2)])
                return ([v.numpy() for v in model.variables]
                        + [v.numpy() for v in model.optimizer.variables])
            except ht.Interrupted:
                pass

    expected = run(str(tmp_path / "ref"))
    actual = run(str(tmp_path / "b"), [(1, 3)])
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert np.array_equal(a, e)
