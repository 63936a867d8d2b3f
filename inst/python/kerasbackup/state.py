"""What a checkpoint holds, and how it is captured and restored.

A checkpoint is a pair `(arrays, meta)`: `arrays` maps names to numpy arrays
and `meta` is JSON. The store writes both; this module knows what goes in
them. `TrainingState` is the JSON part; the arrays hold the variables
(`model/00000`, `optimizer/00000`, `metrics/00000`, and for optimizers held
as attributes, `optimizer:d_optimizer/00000`), the random generators
(`rng/...`) and array-valued callback state (`callback/...`).

A restore is all-or-nothing: `check_restore()` validates every part of a
checkpoint against the model (array dtypes and shapes against the table and
the variables, the random-generator states, the callback entries) and
returns a `RestorePlan` without assigning anything; `RestorePlan.apply()`
then assigns the variables and the generators together, and puts back what
it had changed if an assignment fails after all.
"""

import dataclasses
import json
import math
import random
import sys

import numpy as np

import keras

from kerasbackup import replicas
from kerasbackup.store.fileio import crc32_combine

# Keras callbacks whose state we save, and the attributes that hold it.
# Anything else opts in with get_state()/set_state().
_CALLBACK_ATTRS = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_weights", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
    "ModelCheckpoint": (
        "best",
        "_last_batch_seen",
        "_batches_seen_since_last_saving",
        "_current_epoch",
    ),
}
# Callbacks that hold no training state of their own.
_STATELESS = ("History", "ProgbarLogger", "BackupAndRestore", "CallbackList")

_MT_WORDS = 624  # Mersenne Twister state: 624 32-bit words and a position


class InvalidCheckpointContent(ValueError):
    """A checkpoint that verified on disk holds content unfit for the model.

    Attributes:
        problems: list of `(file, detail)`.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(f"{f}: {d}" for f, d in self.problems))


# ---------------------------------------------------------------- plain values


def json_value(value):
    """A numpy or backend scalar as a plain Python value; other values as they are."""
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = np.asarray(value.numpy())
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def _meta_value(value):
    # A dataclass inside (e.g. in a callback's saved state) as asdict() gave it.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return json_value(value)


def log_values(logs):
    """Keras logs with floats where possible, as Keras' History keeps them; order kept."""
    values = {}
    for key, value in (logs or {}).items():
        try:
            values[key] = float(np.asarray(value))
        except (TypeError, ValueError):
            values[key] = value
    return values


# ---------------------------------------------------------------- the state


@dataclasses.dataclass
class TrainingState:
    """The JSON part of a checkpoint: where training is and everything but arrays.

    Attributes:
        epoch: 0-based epoch training resumes in.
        batch: batches of that epoch already done (0 at an epoch boundary).
        batches_since_save: for `save_freq=N`, batches counted towards the next save.
        shuffle_seed: the driver's data-order seed (None for model.fit()).
        history: metric name -> list of per-epoch values.
        history_epochs: the epochs the history covers.
        fingerprint: item -> description of the setup (see `fingerprint()`).
        variables: group ("model", "optimizer", "metrics", and
            "optimizer:<attribute>" for each optimizer held as an attribute,
            see `attribute_optimizers()`) -> `[[path, shape, dtype], ...]`,
            in the order of the model's variables.
        optimizer_targets: "optimizer:<attribute>" -> the positions in
            `model.variables` of the variables that optimizer was built for
            (None if it was not built yet; a None position for a variable
            that is not the model's), so that a resume can build it alike.
        rng: JSON part of the global random generators (see `capture_rng()`).
        callbacks: saved states of the other callbacks, by position.
        keras_version: the Keras that wrote it.
        rng_ranks: with several workers, every worker's generators by rank
            (`rng_to_json()`), each restored on its own worker.
        epoch_rng: for a checkpoint a plain model.fit() saved inside an
            epoch, the generators as they were when that epoch began, before
            its data iterator drew its shuffle order: one `rng_to_json()`
            value per worker, by rank (empty otherwise). A resume sets them
            back to draw the same order, then restores `rng`.
        tf_global_seed: TensorFlow's global seed when it was saved (None if
            none was set, or on another backend): with it, model.fit() on
            TensorFlow shuffles arrays in an order the seed determines.
    """

    epoch: int
    batch: int = 0
    batches_since_save: int = 0
    shuffle_seed: object = None
    history: dict = dataclasses.field(default_factory=dict)
    history_epochs: list = dataclasses.field(default_factory=list)
    fingerprint: dict = dataclasses.field(default_factory=dict)
    variables: dict = dataclasses.field(default_factory=dict)
    optimizer_targets: dict = dataclasses.field(default_factory=dict)
    rng: dict = dataclasses.field(default_factory=dict)
    callbacks: list = dataclasses.field(default_factory=list)
    keras_version: str = ""
    rng_ranks: list = dataclasses.field(default_factory=list)
    epoch_rng: list = dataclasses.field(default_factory=list)
    tf_global_seed: object = None

    def to_meta(self, fresh=()):
        """A JSON copy (later edits of the lists here do not reach it).

        The fields named in `fresh` were made for this copy alone and are
        taken as they are (the store encodes them): their copy, the
        generators' state above all, was most of this one's cost.
        """
        # The JSON round trip is the deep copy: asdict()'s own would double
        # the cost of this, paid on the training thread at every save.
        names = [f.name for f in dataclasses.fields(self)]
        copied = json.loads(json.dumps(
            {n: getattr(self, n) for n in names if n not in fresh}, default=_meta_value))
        return {n: getattr(self, n) if n in fresh else copied[n] for n in names}

    @classmethod
    def from_meta(cls, meta):
        """Reads a checkpoint's meta; raises InvalidCheckpointContent if malformed."""
        problems = []

        def need(ok, detail):
            if not ok:
                problems.append(("state.json", detail))
            return ok

        if not need(isinstance(meta, dict), "the training state is not an object"):
            raise InvalidCheckpointContent(problems)
        for key in ("epoch", "batch", "batches_since_save"):
            need(_is_count(meta.get(key, 0)),
                 f"{key} is {meta.get(key)!r}, not a whole number >= 0")
        seed = meta.get("shuffle_seed")
        need(seed is None or _is_count(seed), f"shuffle_seed is {seed!r}")
        history = meta.get("history", {})
        need(isinstance(history, dict) and all(
            isinstance(k, str) and isinstance(v, list) for k, v in history.items()),
            "history is not a mapping of names to lists")
        epochs = meta.get("history_epochs", [])
        if need(isinstance(epochs, list) and all(_is_count(e) for e in epochs),
                "history_epochs is not a list of epochs"):
            # Each finished epoch once, in order, before the one resumed in.
            epoch = meta.get("epoch", 0)
            need(all(a < b for a, b in zip(epochs, epochs[1:]))
                 and (not epochs or not _is_count(epoch) or epochs[-1] < epoch),
                 f"history_epochs {epochs!r:.80} are not the finished epochs "
                 f"before epoch {epoch!r}")
            if isinstance(history, dict) and "history_epochs" in meta:
                # A metric logged in some epochs only (validation_freq) has fewer.
                need(all(len(v) <= len(epochs) for v in history.values()
                         if isinstance(v, list)),
                     f"history has more values than its {len(epochs)} epochs")
        need(isinstance(meta.get("fingerprint", {}), dict), "fingerprint is not an object")
        need(isinstance(meta.get("rng", {}), dict), "rng is not an object")
        need(isinstance(meta.get("callbacks", []), list), "callbacks is not a list")
        need(isinstance(meta.get("rng_ranks", []), list), "rng_ranks is not a list")
        need(isinstance(meta.get("epoch_rng", []), list), "epoch_rng is not a list")
        tf_seed = meta.get("tf_global_seed")
        need(tf_seed is None or (isinstance(tf_seed, int) and not isinstance(tf_seed, bool)),
             f"tf_global_seed is {tf_seed!r}")
        need(_valid_index(meta.get("variables")), "the variable table is malformed")
        need(_valid_targets(meta.get("optimizer_targets", {})),
             "optimizer_targets is malformed")
        if problems:
            raise InvalidCheckpointContent(problems)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in names})


def _is_count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _valid_index(index):
    if not isinstance(index, dict):
        return False
    for entries in index.values():
        if not isinstance(entries, list):
            return False
        for e in entries:
            if not (isinstance(e, list) and len(e) == 3 and isinstance(e[0], str)
                    and isinstance(e[1], list) and all(_is_count(d) for d in e[1])
                    and isinstance(e[2], str)):
                return False
    return True


def _valid_targets(targets):
    return isinstance(targets, dict) and all(
        isinstance(k, str) and (v is None or (isinstance(v, list) and all(
            i is None or _is_count(i) for i in v)))
        for k, v in targets.items())


# ---------------------------------------------------------------- optimizers


def attribute_optimizers(model):
    """The optimizers the model holds besides `model.optimizer`: `[(group, optimizer)]`.

    A custom train_step() (a GAN's) keeps its own optimizers as attributes
    (`self.d_optimizer`). They are looked for in the public attributes of the
    model and, recursively, of the layers held in its public attributes (and
    in lists and dicts there), in sorted order. Each is named by its attribute path, e.g.
    "optimizer:d_optimizer", "optimizer:critic.optimizer",
    "optimizer:opts[1]": the same script names them alike in every run.
    """
    found = []
    seen = {id(getattr(model, "optimizer", None))}
    visited = set()

    def visit(obj, prefix):
        if id(obj) in visited:
            return
        visited.add(id(obj))
        for name in sorted(vars(obj)):
            if name.startswith("_"):
                continue
            value = vars(obj)[name]
            if isinstance(value, (list, tuple)):
                items = [(f"{name}[{i}]", v) for i, v in enumerate(value)]
            elif isinstance(value, dict):
                items = [(f"{name}[{k}]", v) for k, v in sorted(
                    value.items(), key=lambda kv: str(kv[0])) if isinstance(k, str)]
            else:
                items = [(name, value)]
            for path, item in items:
                if isinstance(item, keras.optimizers.Optimizer):
                    if id(item) not in seen:
                        seen.add(id(item))
                        found.append((f"optimizer:{prefix}{path}", item))
                elif isinstance(item, keras.layers.Layer):
                    visit(item, f"{prefix}{path}.")

    visit(model, "")
    return found


def optimizer_targets(model):
    """`TrainingState.optimizer_targets` for the model's attribute optimizers."""
    position = {id(v): i for i, v in enumerate(model.variables)}
    targets = {}
    for group, opt in attribute_optimizers(model):
        if not opt.built:
            targets[group] = None
        else:
            # Keras keeps the variables an optimizer was built for in
            # `_trainable_variables`; there is no public accessor.
            targets[group] = [position.get(id(v)) for v in opt._trainable_variables]
    return targets


def build_attribute_optimizers(model, targets):
    """Builds each unbuilt attribute optimizer the checkpoint had built, alike.

    Building creates the zero slots its first step would create, on the
    variables it was built for then, so its saved variables can be assigned.
    Returns what is wrong with `targets` (positions beyond the model's
    variables); raises `UnbuiltStateError` for an optimizer built for
    variables that are not the model's, which no resume can find.
    """
    from kerasbackup.errors import UnbuiltStateError

    variables = list(model.variables)
    problems = []
    for group, opt in attribute_optimizers(model):
        wanted = targets.get(group)
        if opt.built or wanted is None:
            continue
        if any(i is None for i in wanted):
            raise UnbuiltStateError(
                "The checkpoint holds the state of the optimizer "
                f"`{group.split(':', 1)[1]}`, "
                "which is not built yet and was built for variables that are "
                "not the model's, so it cannot be built alike. Build it before "
                "fit() (`optimizer.build(variables)`, with the variables its "
                "train step updates), or make those variables part of the model.")
        if any(i >= len(variables) for i in wanted):
            problems.append(f"{group} was built for variable {max(wanted)}, the "
                            f"model has {len(variables)}")
            continue
        with keras.name_scope(opt.name, caller=opt):
            opt.build([variables[i] for i in wanted])
    return problems


def unbuilt_layers(model):
    """The names of the model's layers (itself included) not built yet.

    Their variables are created at their first call, inside the first train
    step, after a restore would have had to assign them.
    """
    return [layer.name for layer in model._flatten_layers(include_self=True)
            if not layer.built]


# ---------------------------------------------------------------- variables


def variable_groups(model, include_metrics):
    groups = [("model", list(model.variables))]
    opt = getattr(model, "optimizer", None)
    if opt is not None:
        groups.append(("optimizer", list(opt.variables)))
    for group, extra in attribute_optimizers(model):
        groups.append((group, list(extra.variables)))
    if include_metrics:
        groups.append(("metrics", list(model.metrics_variables)))
    return groups


def ensure_optimizer_built(model):
    """Builds the optimizer so that its variables can be restored."""
    opt = getattr(model, "optimizer", None)
    if opt is not None and not opt.built:
        opt.build(model.trainable_variables)


def capture_variables(model, include_metrics, into=None, device=None, writer=True,
                      checksums=None):
    """Takes the model's, optimizer's (and metrics') variables to host memory.

    Without `into`, returns read-only views that cost no copy: with
    TensorFlow a variable's read tensor keeps the value it had (an update
    copies the variable's buffer first while the tensor is referenced). That
    is enough for a synchronous save, during which training waits. With
    `into` (a `saver.HostBuffers` kept from one capture to the next), each
    value is copied into its reused block, for a background write.
    With `device` (a `snapshot.DeviceSnapshot`), each value is copied on its
    device instead, into `device`, and left out of the arrays returned.
    Variables that keep one value per replica are captured with one row per
    replica (see replicas.py), a collective under a multi-worker strategy:
    a worker that does not write (`writer=False`) still takes part in it,
    and captures nothing else. With `checksums` (a dict) and `into`, the
    crc32 of each value copied into `into` goes there by name, taken during
    the copy (see HostBuffers.fill), for the store; values kept as copies
    of their own, and all of them without isal's crc32_combine, get none.

    Returns `(arrays, index)`; `index` records each variable's path, shape
    and dtype so that a restore can check them before assigning anything.
    """
    arrays, index = {}, {}
    unread = {}  # name -> (variable, its table entry): read when copied
    for group, variables in variable_groups(model, include_metrics):
        entries = []
        per_replica = replicas.gather(variables)
        for i, v in enumerate(variables):
            if not writer:
                continue
            name = f"{group}/{i:05d}"
            if device is not None and i not in per_replica:
                shape, dtype = device.add(name, v)
                entries.append([v.path, list(shape), dtype])
                continue
            layout = None if into is None or i in per_replica else _host_layout(v)
            if layout is not None:
                # The block is laid out first; each value is read (a device
                # to host copy on a GPU) only when copied in, one at a time.
                entries.append([v.path, list(layout[0]), str(layout[1])])
                arrays[name] = None  # keeps the file order; filled below
                unread[name] = (v, entries[-1], layout)
                continue
            value = per_replica[i] if i in per_replica else _host_view(v)
            arrays[name] = value
            entries.append([v.path, list(value.shape), str(value.dtype)])
        index[group] = entries
    if into is not None and arrays:
        # Copies into one block laid out as the data file (see HostBuffers).
        bufs = into.reserve([(name, *unread[name][2]) if name in unread
                             else (name, a.shape, a.dtype) for name, a in arrays.items()])

        copied = []  # names, in the order of their copies

        def copies():  # reads each value as its copy is due
            for (name, value), buf in zip(list(arrays.items()), bufs):
                if name in unread:
                    v, entry, _ = unread.pop(name)
                    value = _host_view(v)
                    if value.shape != buf.shape or value.dtype != buf.dtype:
                        # Not what the variable declared: keep a copy of its own.
                        entry[1:] = [list(value.shape), str(value.dtype)]
                        arrays[name] = np.array(value, copy=True)
                        continue
                arrays[name] = buf
                copied.append(name)
                yield buf, value

        crcs = [] if checksums is not None and crc32_combine is not None else None
        into.fill(copies(), sum(buf.nbytes for buf in bufs), crcs)
        if crcs is not None:
            checksums.update(zip(copied, crcs))
    return arrays, index


def _host_layout(v):
    """`(shape, dtype)` of `v`'s host value, without reading it; None if unsure."""
    try:
        shape = tuple(int(n) for n in v.shape)
        return shape, np.dtype(str(v.dtype))
    except (TypeError, ValueError):
        return None


def _host_view(v):
    """The current value of `v` as a host array, without a copy if possible."""
    tf_var = getattr(v, "value", None)
    if getattr(tf_var, "read_value", None) is not None:
        return np.asarray(_read_tf_variable(tf_var))
    # Other backends may update in place: take a private copy.
    return np.array(v.numpy(), copy=True)


def _read_tf_variable(tf_var):
    """A tf.Variable's current value: a zero-copy snapshot on the CPU.

    One ReadVariableOp on its handle, where read_value() adds an Identity
    (half the cost per variable inside fit()); not value(), which returns
    a stale copy for a variable made with a caching_device. A distributed
    variable has no handle outside a replica context: read_value() then.
    """
    try:
        handle = tf_var.handle
    except ValueError:
        return tf_var.read_value()
    import tensorflow as tf

    return tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf_var.dtype)


def _table_problems(group, saved, arrays):
    """Where the variable table contradicts the arrays stored with it."""
    problems = []
    for i, (path, shape, dtype) in enumerate(saved):
        value = arrays.get(f"{group}/{i:05d}")
        try:
            want = np.dtype(dtype)
        except TypeError:
            problems.append(f"{group} variable {path}: unknown dtype {dtype!r}")
            continue
        if value is None:
            problems.append(f"{group} variable {path}: its array is missing")
        elif value.dtype != want or tuple(value.shape) != tuple(shape):
            problems.append(
                f"{group} variable {path}: the table says {dtype}{tuple(shape)}, "
                f"the array is {value.dtype}{tuple(value.shape)}")
    return problems


def _model_differences(group, saved, variables):
    """`[(item, saved, current)]` where the table describes other variables."""
    if len(saved) != len(variables):
        return [(f"{group} variables", len(saved), len(variables))]
    differences = []
    for v, (path, shape, dtype) in zip(variables, saved):
        now = (str(v.dtype), replicas.captured_shape(v))
        if now != (dtype, tuple(shape)):
            differences.append((f"{group} variable {path}",
                                f"{dtype}{tuple(shape)}", f"{now[0]}{now[1]}"))
    return differences


# ---------------------------------------------------------------- random state


def _tf_global_generator():
    """TensorFlow's global tf.random.Generator if it exists (never creates one).

    The public `tf.random.get_global_generator()` would create one with a
    non-deterministic state. Without TensorFlow imported there is none (and
    importing it here would cost seconds on the other backends).
    """
    if "tensorflow" not in sys.modules:
        return None
    try:
        from tensorflow.python.ops import stateful_random_ops
    except Exception:
        return None
    return getattr(stateful_random_ops, "global_generator", None)


def _torch():
    """torch, when Keras runs on it: there Dropout and the other random ops
    with seed=None draw from torch's global generators, not from a Keras
    SeedGenerator (keras/src/backend/torch/random.py)."""
    if keras.backend.backend() != "torch":
        return None
    import torch

    return torch


def _torch_cuda_count(torch):
    # Only generators CUDA has made: asking for them would initialise it.
    return torch.cuda.device_count() if torch.cuda.is_initialized() else 0


def _keras_global_seed_generator():
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute("global_seed_generator")


def tf_global_seed():
    """TensorFlow's global seed (`tf.random.set_seed()`), or None if unset or not TF."""
    if keras.backend.backend() != "tensorflow" or "tensorflow" not in sys.modules:
        return None
    from tensorflow.python.eager import context

    seed = context.global_seed()
    return None if seed is None else int(seed)


def capture_rng():
    """Captures the global generators that training may draw from."""
    arrays, meta = {}, {}
    py_state = random.getstate()
    meta["python"] = [py_state[0], list(py_state[1]), py_state[2]]
    name, keys, pos, has_gauss, cached = np.random.get_state()
    arrays["rng/numpy"] = np.array(keys, copy=True)
    meta["numpy"] = [name, int(pos), int(has_gauss), float(cached)]
    gen = _keras_global_seed_generator()
    if gen is not None:
        arrays["rng/keras"] = np.array(gen.state.numpy(), copy=True)
    tf_gen = _tf_global_generator()
    if tf_gen is not None:
        arrays["rng/tf"] = np.array(tf_gen.state.numpy(), copy=True)
    torch = _torch()
    if torch is not None:
        arrays["rng/torch"] = torch.get_rng_state().numpy().copy()
        for i in range(_torch_cuda_count(torch)):
            arrays[f"rng/torch-cuda/{i}"] = torch.cuda.get_rng_state(i).numpy().copy()
    return arrays, meta


def check_rng(arrays, meta):
    """Returns what is wrong with a captured generator state (empty if nothing)."""
    problems = []
    # capture_rng() always takes these two: without them the resume is not exact.
    if "python" not in meta:
        problems.append("Python's random state is missing")
    if "numpy" not in meta or "rng/numpy" not in arrays:
        problems.append("NumPy's random state is missing")
    if "python" in meta:
        p = meta["python"]
        ok = (isinstance(p, list) and len(p) == 3 and p[0] == 3
              and isinstance(p[1], list) and len(p[1]) == _MT_WORDS + 1
              and all(_is_count(w) and w < 2**32 for w in p[1])
              and p[1][-1] <= _MT_WORDS
              and (p[2] is None or (isinstance(p[2], float) and math.isfinite(p[2]))))
        if not ok:
            problems.append("Python's random state is malformed")
    if "numpy" in meta or "rng/numpy" in arrays:
        n = meta.get("numpy")
        keys = arrays.get("rng/numpy")
        ok = (isinstance(n, list) and len(n) == 4 and n[0] == "MT19937"
              and _is_count(n[1]) and n[1] <= _MT_WORDS and n[2] in (0, 1)
              and isinstance(n[3], (int, float)) and not isinstance(n[3], bool)
              and math.isfinite(n[3])
              and keys is not None and keys.dtype == np.uint32
              and keys.shape == (_MT_WORDS,))
        if not ok:
            problems.append("NumPy's random state is malformed")
    if "rng/keras" in arrays:
        gen = _keras_global_seed_generator()
        if gen is not None:
            want = (np.dtype(str(gen.state.dtype)), tuple(gen.state.shape))
        else:
            from keras.src.backend import random_seed_dtype

            want = (np.dtype(random_seed_dtype()), (2,))
        got = arrays["rng/keras"]
        if (got.dtype, got.shape) != want:
            problems.append(f"Keras' seed generator state is {got.dtype}{got.shape}, "
                            f"expected {want[0]}{want[1]}")
    if "rng/tf" in arrays:
        gen = _tf_global_generator()
        want = ((np.dtype(gen.state.dtype.as_numpy_dtype), tuple(gen.state.shape))
                if gen is not None else (np.dtype("int64"), (3,)))
        got = arrays["rng/tf"]
        if (got.dtype, got.shape) != want:
            problems.append(f"TensorFlow's generator state is {got.dtype}{got.shape}, "
                            f"expected {want[0]}{want[1]}")
    problems += _check_torch_rng(arrays)
    return problems


def rng_to_json(arrays, meta):
    """A captured generator state as one JSON value (to send it to another worker)."""
    return {"meta": meta,
            "arrays": {k: [str(a.dtype), list(a.shape), a.reshape(-1).tolist()]
                       for k, a in arrays.items()}}


def rng_from_json(value):
    """`(arrays, meta)` from `rng_to_json()`; raises TypeError/ValueError if malformed."""
    if not (isinstance(value, dict) and isinstance(value.get("meta"), dict)
            and isinstance(value.get("arrays"), dict)):
        raise TypeError("not a generator state")
    arrays = {}
    for name, entry in value["arrays"].items():
        if not (isinstance(name, str) and name.startswith("rng/")
                and isinstance(entry, list) and len(entry) == 3):
            raise TypeError(f"malformed generator array {name!r}")
        dtype, shape, flat = entry
        arrays[name] = np.array(flat, dtype=np.dtype(dtype)).reshape(shape)
    return arrays, value["meta"]


def _torch_cuda_names(arrays):
    names = [k for k in arrays if k.startswith("rng/torch-cuda/")]
    return sorted(names, key=lambda k: int(k.rsplit("/", 1)[1]))


def _check_torch_rng(arrays):
    torch = _torch()
    if torch is None:
        return []  # another backend's checkpoint: its fingerprint says so
    problems = []
    want = torch.get_rng_state()
    got = arrays.get("rng/torch")
    if got is not None and (got.dtype != np.uint8 or got.shape != tuple(want.shape)):
        problems.append(f"torch's generator state is {got.dtype}{got.shape}, "
                        f"expected uint8{tuple(want.shape)}")
    for i, name in enumerate(_torch_cuda_names(arrays)):
        got = arrays[name]
        if name != f"rng/torch-cuda/{i}" or got.dtype != np.uint8 or got.ndim != 1:
            problems.append(f"torch's CUDA generator state {name} is "
                            f"{got.dtype}{got.shape}, expected a uint8 vector "
                            "for each device from 0 on")
            break
    return problems


def inexact_rng(arrays):
    """What of a checked generator state cannot be put back here (empty if all can)."""
    torch = _torch()
    saved = _torch_cuda_names(arrays)
    if torch is None or not saved:
        return []
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have != len(saved):
        return [f"the random generators of the {len(saved)} CUDA devices it was "
                f"saved on (this process has {have})"]
    return []


def restore_rng(arrays, meta):
    """Restores the generators captured by `capture_rng()`; check them first."""
    if "rng/keras" in arrays:
        from keras.src.random import seed_generator

        # Creating Keras' global generator draws from Python's random
        # module: do it before that module's state is put back.
        gen = seed_generator.global_seed_generator()
    if "python" in meta:
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in meta and "rng/numpy" in arrays:
        name, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((name, arrays["rng/numpy"], pos, has_gauss, cached))
    if "rng/keras" in arrays:
        gen.state.assign(arrays["rng/keras"])
    if "rng/tf" in arrays:
        import tensorflow as tf

        tf_gen = _tf_global_generator() or tf.random.get_global_generator()
        tf_gen.state.assign(arrays["rng/tf"])
    torch = _torch()
    if torch is not None and "rng/torch" in arrays:
        torch.set_rng_state(torch.from_numpy(np.array(arrays["rng/torch"], copy=True)))
        cuda = _torch_cuda_names(arrays)
        if cuda and not inexact_rng(arrays):
            for i, name in enumerate(cuda):
                torch.cuda.set_rng_state(
                    torch.from_numpy(np.array(arrays[name], copy=True)), i)


# ---------------------------------------------------------------- callbacks


def callback_state(cb):
    """Returns `(kind, state)` for a callback, or None if it holds none.

    `state` maps attribute names to JSON values or lists of numpy arrays.
    """
    name = type(cb).__name__
    if name in _STATELESS:
        return None
    if callable(getattr(cb, "get_state", None)):
        return "custom", dict(cb.get_state() or {})
    attrs = _keras_attrs(cb)
    if attrs:
        return "keras", {a: json_value(getattr(cb, a, None)) for a in attrs}
    return None


def capture_callbacks(callbacks):
    """Captures the state of every stateful callback, keyed by position."""
    arrays, meta = {}, []
    for pos, cb in enumerate(callbacks):
        found = callback_state(cb)
        if found is None:
            continue
        kind, values = found
        plain = {}
        for key, value in values.items():
            if isinstance(value, (list, tuple)) and value and all(
                isinstance(x, np.ndarray) for x in value
            ):
                for i, x in enumerate(value):
                    arrays[f"callback/{pos}/{key}/{i:05d}"] = np.array(x, copy=True)
                plain[key] = {"__arrays__": len(value)}
            elif isinstance(value, np.ndarray):
                arrays[f"callback/{pos}/{key}/array"] = np.array(value, copy=True)
                plain[key] = {"__array__": True}
            else:
                plain[key] = json_value(value)
                bad = _unsavable(plain[key], repr(key))
                if bad is not None:
                    from kerasbackup.errors import CallbackStateError

                    raise CallbackStateError(type(cb).__name__, pos, key, *bad)
        meta.append({"position": pos, "class": type(cb).__name__, "kind": kind,
                     "state": plain})
    return arrays, meta


def _unsavable(value, where):
    """`(where, value)` of the first part of `value` that JSON cannot hold
    as it is (the way to_meta() writes it), or None."""
    value = _meta_value(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if isinstance(value, (list, tuple)):
        for i, x in enumerate(value):
            bad = _unsavable(x, f"{where}[{i}]")
            if bad is not None:
                return bad
        return None
    if isinstance(value, dict):
        for k, x in value.items():
            if not isinstance(k, str):
                return f"a key of {where}", k
            bad = _unsavable(x, f"{where}[{k!r}]")
            if bad is not None:
                return bad
        return None
    return where, value


def _callback_values(entry, arrays):
    """The values of one saved callback entry; raises KeyError/TypeError if malformed."""
    pos = entry["position"]
    values = {}
    for key, value in entry["state"].items():
        if isinstance(value, dict) and "__arrays__" in value:
            count = value["__arrays__"]
            if not _is_count(count):
                raise TypeError(f"array count {count!r}")
            values[key] = [arrays[f"callback/{pos}/{key}/{i:05d}"] for i in range(count)]
        elif isinstance(value, dict) and value.get("__array__"):
            values[key] = arrays[f"callback/{pos}/{key}/array"]
        else:
            values[key] = value
    return values


def _keras_attrs(cb):
    """The attributes saved for a Keras callback (see callback_state())."""
    for cls in type(cb).__mro__:
        attrs = _CALLBACK_ATTRS.get(cls.__name__)
        if attrs and cls.__module__.startswith("keras"):
            return attrs
    return ()


def _value_kind(value):
    """What kind of value a saved callback attribute is, for comparing them."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, np.ndarray):
        return "an array"
    if isinstance(value, (list, tuple)):
        return "arrays" if value and all(isinstance(x, np.ndarray) for x in value) else "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _keras_callback_problems(cb, values):
    """What in the saved values of Keras callback `cb` it cannot take back."""
    attrs = _keras_attrs(cb)
    problems = []
    for key, value in values.items():
        if key not in attrs:
            problems.append(f"{key!r} is not a saved attribute of {type(cb).__name__}")
            continue
        # Where the attribute holds a value now, the saved one must be alike
        # (None stands for "not set yet" on either side).
        want, got = _value_kind(json_value(getattr(cb, key, None))), _value_kind(value)
        if want is not None and got is not None and want != got:
            problems.append(f"{type(cb).__name__}.{key} is {got} ({value!r:.40}), "
                            f"expected {want}")
    return problems


def check_callbacks(entries, arrays, callbacks=None):
    """Returns what is wrong with saved callback entries (empty if nothing).

    With `callbacks` (the fit()'s, by position), the saved state of each Keras
    callback that restore_callbacks() would match is checked against it too:
    only the attributes callback_state() saves, each of the kind it holds.
    """
    problems = []
    for entry in entries:
        try:
            if not (_is_count(entry["position"]) and isinstance(entry["class"], str)
                    and entry["kind"] in ("custom", "keras")
                    and isinstance(entry["state"], dict)):
                raise TypeError("malformed entry")
            values = _callback_values(entry, arrays)
        except (KeyError, TypeError) as e:
            problems.append(f"saved callback state {entry!r:.60}: {e}")
            continue
        cb = _matching_callback(callbacks or [], entry)
        if cb is not None and entry["kind"] == "keras":
            problems += [f"saved callback state at position {entry['position']}: {p}"
                         for p in _keras_callback_problems(cb, values)]
    return problems


def _matching_callback(callbacks, entry):
    pos = entry["position"]
    cb = callbacks[pos] if pos < len(callbacks) else None
    return cb if cb is not None and type(cb).__name__ == entry["class"] else None


def restore_callbacks(callbacks, arrays, entries):
    """Restores callback states; returns the class names that had no match."""
    unmatched = []
    for entry in entries:
        cb = _matching_callback(callbacks, entry)
        if cb is None:
            unmatched.append(entry["class"])
            continue
        values = _callback_values(entry, arrays)
        if entry["kind"] == "custom":
            cb.set_state(values)
        else:
            for key, value in values.items():
                setattr(cb, key, value)
    return unmatched


# ---------------------------------------------------------------- fingerprint


def _describe(obj):
    if obj is None:
        return None
    if isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_describe(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _describe(v) for k, v in obj.items()}
    name = getattr(obj, "__name__", None) or type(obj).__name__
    get_config = getattr(obj, "get_config", None)
    if callable(get_config):
        try:
            config = {k: v for k, v in get_config().items() if k != "name"}
            return {name: _describe(config)}
        except Exception:
            pass
    return name


def fingerprint(model, fit_info=None):
    """Describes what must not change between an interrupted and a resumed run.

    Layer and variable names are left out: Keras numbers them per session
    (`dense`, `dense_1`, ...), and a resumed script may build its model twice.
    A plain float learning rate is left out too: it is state (callbacks such as
    ReduceLROnPlateau change it) and is restored with the optimizer.
    """
    layers = [type(layer).__name__ for layer in model._flatten_layers(include_self=False)]
    items = {
        # A checkpoint does not move between backends as it is: the seed
        # generators' dtypes and the random streams differ.
        "backend": keras.backend.backend(),
        "layers": " > ".join(layers),
        "weight shapes": " ".join(
            f"{tuple(v.shape)}:{v.dtype}" for v in model.weights
        ),
    }
    opt = getattr(model, "optimizer", None)
    optimizers = [("optimizer", opt)] if opt is not None else []
    for group, opt in optimizers + attribute_optimizers(model):
        # One item per setting, so a mismatch names just what changed.
        items[group] = type(opt).__name__
        config = _optimizer_config(opt)
        config.pop("name", None)
        if isinstance(config.get("learning_rate"), (int, float)):
            config.pop("learning_rate")
        for key, value in config.items():
            items[f"{group} {key}"] = _canonical(_describe(value))
    items["loss"] = _canonical(_describe(getattr(model, "loss", None)))
    compiled = getattr(model, "_compile_config", None)
    metrics = None
    if compiled is not None:
        cfg = compiled.config if hasattr(compiled, "config") else {}
        metrics = [cfg.get("metrics"), cfg.get("weighted_metrics")]
    items["metrics"] = _canonical(_describe(metrics))
    for key, value in (fit_info or {}).items():
        items[key] = value
    return items


def _optimizer_config(opt):
    """The optimizer's config; with a schedule that has no config, a stand-in.

    A learning-rate schedule without `get_config()` (common for schedules
    written in R) makes `opt.get_config()` raise. The schedule is then
    described by its class and plain attributes, and the optimizer's other
    settings are left out of the fingerprint.
    """
    try:
        return dict(opt.get_config())
    except NotImplementedError:
        schedule = getattr(opt, "_learning_rate", None)
        attrs = {k: v for k, v in vars(schedule).items()
                 if not k.startswith("_") and isinstance(v, (str, int, float, bool))}
        return {"learning_rate": {type(schedule).__name__: attrs}}


def _canonical(value):
    return json.dumps(value, sort_keys=True, default=str)


def compare_fingerprints(old, new, allow_changes=False):
    """Returns `[(item, old, new), ...]` for every item that differs."""
    if allow_changes is True:
        return []
    allowed = set(allow_changes or ())
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in allowed or key not in old or key not in new:
            continue
        if old[key] != new[key]:
            diffs.append((key, old[key], new[key]))
    return diffs


def keras_version():
    return keras.__version__


# ---------------------------------------------------------------- capture


class Capture:
    """A snapshot of the training state, ready for the store.

    Attributes:
        meta: the JSON part (a TrainingState's `to_meta()`).
        checksums: crc32 by name of the arrays whose bytes were checksummed
            as they were copied (the store's `save(checksums=)`).
    """

    def __init__(self, arrays, meta, device=None, checksums=None):
        self._arrays = arrays
        self.meta = meta
        self._device = device
        self.checksums = checksums or {}

    @property
    def on_device(self):
        """How many arrays are still copies on the device (0 once in host memory)."""
        return 0 if self._device is None else len(self._device.copies)

    def host_arrays(self):
        """All arrays in host memory. For a background save the saver's
        thread calls this: copies still on the device come over here."""
        if self._device is not None:
            device, self._device = self._device, None
            self._arrays.update(device.to_host())
        return self._arrays


def capture(model, state, include_metrics, callbacks=None, into=None, cluster=None,
            epoch_rng=None):
    """Snapshots the whole training state: returns a `Capture` for the store.

    `state` (a TrainingState) gives the position, history and fingerprint;
    the variable table, generators and callback states are filled in here.
    `into` is the saver's dict of buffers for a background save: with it,
    on JAX and torch, the variables are copied on their device here and
    reach host memory in `Capture.host_arrays()`; elsewhere they are copied
    into reused host buffers. With several workers (`cluster`, see
    distributed.py) every worker calls this at the same batch: the
    per-replica values and every worker's generators are collected from all
    of them, and only the chief, which writes, gets a Capture; the others
    get None. `epoch_rng`: `(arrays, meta)` of `capture_rng()` at the
    begin of the epoch, for a save inside it by a plain model.fit().
    """
    from kerasbackup import snapshot

    writer = cluster is None or cluster.is_chief
    device = None
    if writer and into is not None and snapshot.supported():
        device = snapshot.DeviceSnapshot(into)
    checksums = {}
    arrays, index = capture_variables(model, include_metrics, into=into,
                                      device=device, writer=writer, checksums=checksums)
    if device is not None:
        device.seal()
    rng_arrays, rng_meta = capture_rng()
    rng_ranks = []
    if cluster is not None and cluster.world > 1:
        rng_ranks = cluster.allgather(rng_to_json(rng_arrays, rng_meta))
    epoch_rngs = []
    if epoch_rng is not None:
        epoch_rngs = [rng_to_json(*epoch_rng)]
        if cluster is not None and cluster.world > 1:
            epoch_rngs = cluster.allgather(epoch_rngs[0])
    if not writer:
        return None
    arrays.update(rng_arrays)
    cb_meta = []
    if callbacks:
        cb_arrays, cb_meta = capture_callbacks(callbacks)
        arrays.update(cb_arrays)
    state = dataclasses.replace(state, variables=index,
                                optimizer_targets=optimizer_targets(model),
                                rng=rng_meta, callbacks=cb_meta, rng_ranks=rng_ranks,
                                epoch_rng=epoch_rngs, tf_global_seed=tf_global_seed(),
                                keras_version=keras_version())
    meta = state.to_meta(fresh=("variables", "optimizer_targets", "rng", "rng_ranks",
                                "epoch_rng"))
    return Capture(arrays, meta, device, checksums)


# ---------------------------------------------------------------- restore


@dataclasses.dataclass
class RestorePlan:
    """A checked checkpoint, ready to be assigned.

    Attributes:
        state: the TrainingState read from it.
        arrays: its arrays.
        groups: the variable groups assigned by `apply()`.
        rng: `(arrays, meta)` of the generators this worker restores.
        inexact: what `apply()` cannot put back in this process, in words
            (e.g. CUDA generators of devices it lacks); the resume is then
            not exact.
        epoch_rng: `(arrays, meta)` of this worker's generators at the
            begin of the epoch resumed in (see TrainingState.epoch_rng), or
            None.
    """

    model: object
    state: TrainingState
    arrays: dict
    groups: list
    rng: tuple = None
    inexact: list = dataclasses.field(default_factory=list)
    epoch_rng: tuple = None

    def apply(self):
        """Assigns the variables and the generators, all or none of them."""
        current = dict(variable_groups(self.model, False))
        undo_vars = []
        for g in self.groups:
            per_replica = replicas.gather(current[g])
            undo_vars += [(v, per_replica[i] if i in per_replica else _host_view(v))
                          for i, v in enumerate(current[g])]
        undo_rng = capture_rng()
        try:
            replicas.assign([(v, self.arrays[f"{group}/{i:05d}"])
                             for group in self.groups
                             for i, v in enumerate(current[group])])
            restore_rng(*(self.rng or (self.arrays, self.state.rng)))
        except BaseException:
            replicas.assign(undo_vars)
            restore_rng(*undo_rng)
            raise

    def restore_generators(self):
        """Puts the checkpoint's generators back (as `apply()` did)."""
        restore_rng(*(self.rng or (self.arrays, self.state.rng)))

    def restore_epoch_start_generators(self):
        """Sets the generators back to the begin of the epoch; False if not saved."""
        if self.epoch_rng is None:
            return False
        restore_rng(*self.epoch_rng)
        return True

    def apply_metrics(self):
        """Assigns the metric accumulators saved mid-epoch (after fit() reset them).

        Metrics are built late (model.fit() builds them at its first step),
        so they are checked against the model only now. Returns whether they
        fit and were assigned.
        """
        saved = self.state.variables.get("metrics")
        variables = list(self.model.metrics_variables)
        if saved is None or _model_differences("metrics", saved, variables):
            return False
        replicas.assign([(v, self.arrays[f"metrics/{i:05d}"])
                         for i, v in enumerate(variables)])
        return True


def check_restore(model, meta, arrays, current_fingerprint, allow_changes=False,
                  backup_dir=None, rank=0, world=1, callbacks=None):
    """Checks a loaded checkpoint against the model without assigning anything.

    `rank` and `world`: this process' rank and the number of processes;
    `callbacks`: the fit()'s callbacks, whose saved states are checked
    against them (see check_callbacks()).

    Returns a RestorePlan. Raises InvalidCheckpointContent when the checkpoint
    is unfit although it verified on disk (malformed state, arrays that
    contradict their table or the model the checkpoint's own fingerprint
    describes, broken generator states): the caller treats that as a corrupt
    checkpoint and tries an older one. Raises `FingerprintMismatchError` (from
    kerasbackup.errors) when the checkpoint belongs to another setup.
    """
    from kerasbackup.errors import FingerprintMismatchError

    state = TrainingState.from_meta(meta)
    diffs = compare_fingerprints(state.fingerprint, current_fingerprint, allow_changes)
    if diffs:
        raise FingerprintMismatchError(backup_dir, diffs)
    same_setup = not compare_fingerprints(state.fingerprint, current_fingerprint)

    problems = build_attribute_optimizers(model, state.optimizer_targets)
    differences, groups = [], []
    current = dict(variable_groups(model, False))
    for group, saved in state.variables.items():
        if group == "metrics":
            continue
        problems += _table_problems(group, saved, arrays)
        if group not in current:
            # An optimizer attribute the model no longer has: another setup.
            if compare_fingerprints({group: "present"}, {group: "absent"},
                                    allow_changes):
                raise FingerprintMismatchError(backup_dir,
                                               [(group, "present", "absent")])
            continue
        groups.append(group)
        differences += _model_differences(group, saved, current[group])
    if "metrics" in state.variables:
        problems += _table_problems("metrics", state.variables["metrics"], arrays)
    problems += check_rng(arrays, state.rng)
    if same_setup and state.rng_ranks and len(state.rng_ranks) != world:
        # Written with one entry per worker (none by a single process).
        problems.append(f"generators are saved for {len(state.rng_ranks)} workers, "
                        f"the checkpoint's setup has {world}")
    rng = None
    if rank < len(state.rng_ranks):  # several workers: each its own generators
        try:
            rng = rng_from_json(state.rng_ranks[rank])
            problems += [f"rank {rank}: {p}" for p in check_rng(*rng)]
        except (TypeError, ValueError) as e:
            problems.append(f"the generators saved for rank {rank} are malformed: {e}")
    epoch_rng = None
    if rank < len(state.epoch_rng):
        try:
            epoch_rng = rng_from_json(state.epoch_rng[rank])
            problems += [f"epoch begin: {p}" for p in check_rng(*epoch_rng)]
        except (TypeError, ValueError) as e:
            problems.append(f"the generators saved at the epoch's begin are malformed: {e}")
    problems += check_callbacks(state.callbacks, arrays, callbacks)
    steps = current_fingerprint.get("steps per epoch")
    if same_setup and isinstance(steps, int) and state.batch > steps:
        problems.append(f"batch {state.batch} is beyond the {steps} batches of an epoch")
    if differences and same_setup:
        # The checkpoint's own fingerprint says it was written for this model.
        problems += [f"{item}: the checkpoint has {old}, the model {new}"
                     for item, old, new in differences]
    if problems:
        raise InvalidCheckpointContent([("state.json", p) for p in problems])
    if differences:
        raise FingerprintMismatchError(backup_dir, differences)
    return RestorePlan(model, state, arrays, groups, rng,
                       inexact_rng(rng[0] if rng else arrays), epoch_rng)
