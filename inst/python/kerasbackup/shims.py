"""Fixes for Keras bugs that training with kerasbackup must get past: named, minimal, switchable.

keras-team/keras#20585: Keras' TensorFlow trainer fails under
`tf.distribute.MultiWorkerMirroredStrategy` in two places (3.15.1, and
Keras' development tree of 2026-08-21, 3.16.0.dev, still):

- `mwms_symbolic_build`: `TensorFlowTrainer._maybe_symbolic_build` builds
  the model from the first batch, which under a strategy is per-replica; it
  reduces that batch with `strategy.reduce("MEAN", batch, axis=None)`, which
  fails across workers ("Attempt to convert a value (PerReplica...)").
  Building needs shapes and dtypes only: the fix builds from this worker's
  first local value. `model.fit()` and `model.evaluate()` go through it.
- `mwms_scalar_reduce`: `reduce_per_replica(..., "mean")` reduces with
  `strategy.reduce("MEAN", v, axis=0)` across workers, which fails for the
  scalar logs of every train and test step ("Invalid reduction dimension 0
  for input with 0 dimensions"). The fix reduces scalars with `axis=None`
  (the same mean over replicas) and leaves everything else to Keras.

They are needed on the TensorFlow backend while `keras.__version__` is at
most LAST_BROKEN. `KERASBACKUP_KERAS_SHIMS=0` switches them off and `=1` on,
whatever the version. kerasbackup.fit() installs them for the duration of
a fit under MultiWorkerMirroredStrategy; for a plain `model.fit()` there,
call `apply()` first. A test runs the unfixed Keras code under the strategy
and fails once Keras no longer fails: then raise nothing here, lower
LAST_BROKEN below the fixed version, and the shims switch themselves off.
"""

import contextlib
import os

import keras

#: The newest Keras version known to need the shims (major, minor).
LAST_BROKEN = (3, 16)
NAMES = ("mwms_symbolic_build", "mwms_scalar_reduce")

_installed = {}  # name -> [owner, attribute, original, users]


def _version_tuple(version):
    parts = []
    for piece in str(version).split(".")[:2]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    return tuple(parts + [0] * (2 - len(parts)))


def needed(version=None, backend=None):
    """Whether the shims are on: the env override, else the backend and Keras version."""
    env = os.environ.get("KERASBACKUP_KERAS_SHIMS", "")
    if env in ("0", "1"):
        return env == "1"
    if env:
        raise ValueError(
            "Invalid value for the environment variable "
            "`KERASBACKUP_KERAS_SHIMS`. Expected '0' (off) or '1' (on), or "
            f"unset (decided by the Keras version). Received: {env!r}")
    version = keras.__version__ if version is None else version
    backend = keras.backend.backend() if backend is None else backend
    return backend == "tensorflow" and _version_tuple(version) <= LAST_BROKEN


# The Keras-private names below are those of keras/src/backend/tensorflow/
# trainer.py in Keras 3.15.1 (unchanged in 3.16.0.dev of 2026-08-21).


def _scalar_reduce(original, tf_trainer):
    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and \
                tf_trainer._collective_all_reduce_multi_worker(strategy):
            def reduce_one(v):
                if getattr(v.shape, "rank", None) == 0:  # axis=0 does not exist
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)
            return keras.tree.map_structure(reduce_one, values)
        return original(values, strategy, reduction)
    return reduce_per_replica


def _wrap_symbolic_build(original, tf_trainer):
    import tensorflow as tf

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and strategy is not None and \
                tf_trainer._collective_all_reduce_multi_worker(strategy):
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v,
                    next(it))
                break
            iterator = None
        return original(self, iterator=iterator, data_batch=data_batch)
    return _maybe_symbolic_build


def _targets():
    from keras.src.backend.tensorflow import trainer as tf_trainer

    return {
        "mwms_scalar_reduce": (tf_trainer, "reduce_per_replica", _scalar_reduce),
        "mwms_symbolic_build": (tf_trainer.TensorFlowTrainer,
                                "_maybe_symbolic_build", _wrap_symbolic_build),
    }, tf_trainer


def apply(names=NAMES):
    """Installs the shims in `names` if `needed()`; returns the names now installed.

    Idempotent; each call is undone by one `remove(names)`.
    """
    if not needed():
        return []
    targets, tf_trainer = _targets()
    for name in names:
        if name not in targets:
            raise ValueError(
                f"Invalid value for argument `names`. Expected names from "
                f"{NAMES}. Received: {name!r}")
        entry = _installed.get(name)
        if entry is None:
            owner, attr, make = targets[name]
            original = getattr(owner, attr)
            setattr(owner, attr, make(original, tf_trainer))
            entry = _installed[name] = [owner, attr, original, 0]
        entry[3] += 1
    return sorted(_installed)


def remove(names=NAMES):
    """Undoes one `apply(names)`; a shim goes once every apply() is undone."""
    for name in names:
        entry = _installed.get(name)
        if entry is None:
            continue
        entry[3] -= 1
        if entry[3] <= 0:
            owner, attr, original, _ = _installed.pop(name)
            setattr(owner, attr, original)


def installed():
    """The names of the shims installed now."""
    return sorted(_installed)


@contextlib.contextmanager
def applied_for(model):
    """Installs the shims while `model` trains under MultiWorkerMirroredStrategy."""
    names = ()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            names = NAMES if apply(NAMES) else ()
    try:
        yield
    finally:
        if names:
            remove(names)
