"""Tables and help-text rules for tools/generate-wrappers.py.

Names follow keras3's R conventions (keras.layers.Conv2D -> layer_conv_2d);
the tables hold the exceptions to the mechanical rules. Help text is ours,
made from the signature: never copied from Keras' or keras3's docs.
"""

import re

# ---------------------------------------------------------------- names

def snake(name):
    """CamelCase -> snake_case ('KLDivergence' -> 'kl_divergence', 'L1L2' -> 'l1_l2')."""
    name = name.replace("IoU", "Iou")
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


def snake_layer(name):
    """Layer classes: 'Conv2DTranspose' -> 'conv_2d_transpose'."""
    name = name.replace("UpSampling", "Upsampling")
    name = re.sub(r"(\d)D(?=[A-Z]|$)", r"\1d", name)
    name = re.sub(r"([a-zA-Z])(\d)", r"\1_\2", name)
    return snake(name)


def snake_application(name):
    """'MobileNetV3Large' -> 'mobilenet_v3_large', 'EfficientNetV2B0' -> 'efficientnet_v2b0'."""
    s = name.lower()
    s = re.sub(r"(?<=[a-z0-9])(v\d)", r"_\1", s)
    s = re.sub(r"(?<=net)(b\d)$", r"_\1", s)
    s = re.sub(r"(?<=[a-z0-9])(xlarge|large|small|tiny|base|mobile)$", r"_\1", s)
    return s


LAYER_NAMES = {
    "ReLU": "layer_activation_relu",
    "LeakyReLU": "layer_activation_leaky_relu",
    "PReLU": "layer_activation_parametric_relu",
    "ELU": "layer_activation_elu",
    "Softmax": "layer_activation_softmax",
    "TFSMLayer": "layer_tfsm",
    "FlaxLayer": "layer_flax_module_wrapper",
    "JaxLayer": "layer_jax_model_wrapper",
}

RNN_CELLS = {
    "GRUCell": "rnn_cell_gru",
    "LSTMCell": "rnn_cell_lstm",
    "SimpleRNNCell": "rnn_cell_simple",
    "StackedRNNCells": "rnn_cells_stack",
}

# Base classes for subclassing (the keras-api side), and the functional
# API's input (keras_input()/layer_input()).
SKIP_LAYERS = {"Layer", "InputLayer", "Wrapper"}

LAYER_FAMILIES = {
    "activations": ("activation layers", "layers-activations.R"),
    "attention": ("attention layers", "layers-attention.R"),
    "convolutional": ("convolutional layers", "layers-convolutional.R"),
    "core": ("core layers", "layers-core.R"),
    "merging": ("merging layers", "layers-merging.R"),
    "normalization": ("normalization layers", "layers-normalization.R"),
    "pooling": ("pooling layers", "layers-pooling.R"),
    "preprocessing": ("preprocessing layers", "layers-preprocessing.R"),
    "regularization": ("regularization layers", "layers-regularization.R"),
    "reshaping": ("reshaping layers", "layers-reshaping.R"),
    "rnn": ("recurrent layers", "layers-rnn.R"),
    "backend_wrappers": ("backend wrapper layers", "layers-backend-wrappers.R"),
}
LAYER_GROUP_OVERRIDES = {}

OP_FAMILIES = {
    "numpy": ("numpy ops", "ops-numpy.R"),
    "nn": ("nn ops", "ops-nn.R"),
    "linalg": ("linear algebra ops", "ops-linalg.R"),
    "math": ("math ops", "ops-math.R"),
    "image": ("image ops", "ops-image.R"),
    "core": ("core ops", "ops-core.R"),
}
SKIP_OPS = set()

SKIP_CALLBACKS = {
    "Callback",          # base class: Callback() / new_callback_class() are R's own
    "CallbackList",      # Keras' internal container
    "History",           # made by fit() itself
    "BackupAndRestore",  # replaced by this package's callback_backup_and_restore()
}

CLASS_NAMES = {
    "optimizers.RMSprop": "optimizer_rmsprop",
    "optimizers.LossScaleOptimizer": "optimizer_loss_scale",
    "regularizers.OrthogonalRegularizer": "regularizer_orthogonal",
    "constraints.MaxNorm": "constraint_maxnorm",
    "constraints.MinMaxNorm": "constraint_minmaxnorm",
    "constraints.NonNeg": "constraint_nonneg",
    "constraints.UnitNorm": "constraint_unitnorm",
    "callbacks.LambdaCallback": "callback_lambda",
    "callbacks.TensorBoard": "callback_tensorboard",
    "callbacks.TerminateOnNaN": "callback_terminate_on_nan",
    "metrics.FBetaScore": "metric_fbeta_score",
    "metrics.MeanMetricWrapper": "metric_mean_wrapper",
}

SIMPLE_NAMES = {
    "random.randint": "random_integer",
}

# Class -> function pairs whose names are not snake(class).
LOSS_METRIC_PAIRS = {"losses": {}, "metrics": {}}

APPLICATION_NAMES = {
    "InceptionResNetV2": "application_inception_resnet_v2",
}

FEATURE_NAMES = {"feature": "feature_custom"}

# Second R names (keras3 has them too).
R_ALIASES = {
    "layer_bidirectional": ["bidirectional"],
    "layer_time_distributed": ["time_distributed"],
    "application_nasnet_large": ["application_nasnetlarge"],
    "application_nasnet_mobile": ["application_nasnetmobile"],
    "op_maximum": ["op_pmax"],
    "op_minimum": ["op_pmin"],
    "op_convert_to_numpy": ["op_convert_to_array"],
}

# keras.ops.image functions whose keras3 name drops a suffix.
OP_IMAGE_NAMES = {"crop_images": "op_image_crop", "pad_images": "op_image_pad"}


def prefer_short_camel(members, obj):
    """Among aliases of one class (Identity, IdentityInitializer, identity), the
    shortest CamelCase name."""
    camel = [m for m in members if m[:1].isupper()]
    return sorted(camel, key=lambda m: (len(m), m))[0] if camel else None


# keras.utils (and keras.preprocessing) functions keras3 users reach for:
# python path -> (R name, family, file).
UTILS = {
    "utils.to_categorical": ("to_categorical", "utilities", "utils.R"),
    "utils.normalize": ("normalize", "utilities", "utils.R"),
    "utils.pad_sequences": ("pad_sequences", "utilities", "utils.R"),
    "utils.get_file": ("get_file", "utilities", "utils.R"),
    "utils.set_random_seed": ("set_random_seed", "utilities", "utils.R"),
    "utils.clear_session": ("clear_session", "utilities", "utils.R"),
    "utils.get_source_inputs": ("get_source_inputs", "utilities", "utils.R"),
    "utils.serialize_keras_object": ("serialize_keras_object", "utilities", "utils.R"),
    "utils.deserialize_keras_object": ("deserialize_keras_object", "utilities", "utils.R"),
    "utils.get_registered_name": ("get_registered_name", "utilities", "utils.R"),
    "utils.get_registered_object": ("get_registered_object", "utilities", "utils.R"),
    "utils.timeseries_dataset_from_array": ("timeseries_dataset_from_array", "dataset utilities",
                                            "dataset-utils.R"),
    "utils.image_dataset_from_directory": ("image_dataset_from_directory", "dataset utilities",
                                           "dataset-utils.R"),
    "utils.text_dataset_from_directory": ("text_dataset_from_directory", "dataset utilities",
                                          "dataset-utils.R"),
    "utils.audio_dataset_from_directory": ("audio_dataset_from_directory", "dataset utilities",
                                           "dataset-utils.R"),
    "utils.split_dataset": ("split_dataset", "dataset utilities", "dataset-utils.R"),
    "utils.load_img": ("image_load", "image utilities", "image-utils.R"),
    "utils.img_to_array": ("image_to_array", "image utilities", "image-utils.R"),
    "utils.array_to_img": ("image_from_array", "image utilities", "image-utils.R"),
    "utils.save_img": ("image_array_save", "image utilities", "image-utils.R"),
    "preprocessing.image.smart_resize": ("image_smart_resize", "image utilities",
                                         "image-utils.R"),
}

# Ops that take or return indices: 1-based in R, as in keras3, unless the
# caller sets `zero_indexed = TRUE`. path -> (index arguments, which result
# holds indices: "all", a 1-based list position, or None).
INDEXED = {
    "ops.argmax": ((), "all"),
    "ops.argmin": ((), "all"),
    "ops.argsort": ((), "all"),
    "ops.argpartition": (("kth",), "all"),
    "ops.searchsorted": ((), "all"),
    "ops.digitize": ((), "all"),
    "ops.top_k": ((), 2),
    "ops.one_hot": (("x",), None),
    "ops.take": (("indices",), None),
    "ops.take_along_axis": (("indices",), None),
    "random.categorical": ((), "all"),
}

# Endpoints whose wrapper calls a helper other than keras_call().
HELPERS = {
    "utils.set_random_seed": "keras_call_set_seed",
    "utils.get_file": "keras_call_download",
    "datasets.imdb.get_word_index": "keras_call_download",
    "datasets.reuters.get_word_index": "keras_call_download",
    "ops.shape": "keras_call_shape",
    "ops.arange": "keras_call_arange",
    "applications.imagenet_utils.decode_predictions": "keras_call_decode_predictions",
}

# ---------------------------------------------------------------- converters

AXIS_ARGS = {"axis", "axes", "axis1", "axis2", "source", "destination", "shared_axes",
             "input_axes", "output_axes"}
SHAPE_ARGS = {"shape", "input_shape", "batch_input_shape", "batch_shape", "noise_shape",
              "target_shape", "newshape", "new_shape", "output_shape"}
PATH_ARGS = {"filepath", "directory", "log_dir", "cache_dir", "path", "cache_subdir"}
INT_TUPLE_ARGS = {"kernel_size", "strides", "pool_size", "dilation_rate", "size", "image_size",
                  "target_size",
                  "output_padding", "cropping", "padding", "pad_width", "output_size", "ngrams"}
INT_ARGS = {
    "units", "filters", "depth_multiplier", "num_heads", "num_query_heads", "num_key_value_heads",
    "key_dim", "value_dim", "head_dim", "input_dim", "output_dim", "num_classes", "classes",
    "patience", "verbose", "epochs", "batch_size", "steps", "steps_per_execution",
    "decay_steps", "first_decay_steps", "max_tokens", "num_bins", "num_tokens", "crossing_dim",
    "num_oov_indices", "k", "num_thresholds", "maxlen", "sequence_length", "sequence_stride",
    "sampling_rate", "n", "num_samples", "groups", "seed", "start_from_epoch", "cooldown",
    "save_freq", "histogram_freq", "update_freq", "top", "num", "repeats",
    "output_sequence_length", "num_segments", "frame_length", "frame_step", "fft_length",
    "lora_rank", "block_size", "N", "M", "start_index", "end_index", "max_value_index",
    "class_id", "top_k", "num_or_size_splits", "indices_or_sections", "minlength",
    "sliding_window", "max_number", "maximum_iterations", "num_labels", "ignore_class",
    "top_cropping", "left_cropping", "bottom_cropping", "right_cropping", "top_padding",
    "left_padding", "bottom_padding", "right_padding", "target_height", "target_width",
    "height", "width",
}
DATA_ARGS = {"y_true", "y_pred"}

# Python argument names that keras3 spells differently in R (`function` is
# reserved in R): python path:argument -> R name.
ARG_RENAMES = {"layers.Lambda:function": "f", "ops.arange:stop": "end",
               "ops.vectorized_map:function": "f"}

# R formals in keras3's order where it differs from Python's: python path ->
# Python names to put first, in that order (vectorized_map: data first, so it pipes).
ARG_ORDER = {"ops.vectorized_map": ("elements", "function")}

# R defaults that differ from Python's (R source text): python path:argument.
ARG_DEFAULTS = {"ops.arange:step": "1L"}

# Arguments only the R wrapper has (keras3 has them too), after Python's:
# python path -> [(name, R default)]. The wrapper's helper reads them.
R_ONLY_ARGS = {"ops.arange": [("include_end", "TRUE")]}

# Index arguments (see INDEXED) whose 0s pass unchanged in 1-based mode, as
# keras3 passes them: a 0 then encodes the first position, like a 1.
INDEX_ZERO_PASSES = {"ops.one_hot": ("x",)}

ARG_CONVERTERS = {
    "layers.Permute:dims": "as_integer_tuple",
    "random.randint:minval": "as_integer",
    "ops.roll:shift": "as_integer",
    "ops.multi_hot:inputs": "as_integer",
    "random.randint:maxval": "as_integer",
    "ops.tensordot:axes": "as_tensordot_axes",
    "random.randint:minval": "as_integer",
    "random.randint:maxval": "as_integer",
    "layers.Dropout:rate": "as_dropout_rate",
    "utils.pad_sequences:sequences": "as_sequences",
    "utils.to_categorical:x": "as_py_array",
    "utils.normalize:x": "as_py_array",
    "utils.timeseries_dataset_from_array:data": "as_py_array",
    "utils.timeseries_dataset_from_array:targets": "as_py_array",
}
for _hook in ("on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end",
              "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin",
              "on_predict_batch_end"):
    ARG_CONVERTERS[f"callbacks.LambdaCallback:{_hook}"] = "as_index_logs_callback"

# ---------------------------------------------------------------- help text

KIND_LABELS = {
    "activation layers": "activation layer", "attention layers": "attention layer",
    "convolutional layers": "convolutional layer", "core layers": "core layer",
    "merging layers": "merging layer", "normalization layers": "normalization layer",
    "pooling layers": "pooling layer", "preprocessing layers": "preprocessing layer",
    "regularization layers": "regularization layer", "reshaping layers": "reshaping layer",
    "recurrent layers": "recurrent layer", "backend wrapper layers": "backend wrapper layer",
    "numpy ops": "NumPy-style operation", "nn ops": "neural network operation",
    "linear algebra ops": "linear algebra operation", "math ops": "math operation",
    "image ops": "image operation", "core ops": "core operation",
    "activations": "activation function", "losses": "loss", "metrics": "metric",
    "optimizers": "optimizer", "learning rate schedules": "learning rate schedule",
    "initializers": "initializer", "regularizers": "regularizer", "constraints": "constraint",
    "callbacks": "callback", "random": "random number generator", "config": "configuration",
    "applications": "pretrained model", "utilities": "utility",
    "dataset utilities": "dataset utility", "image utilities": "image utility",
    "datasets": "dataset", "feature space": "feature space feature",
}


def py_name(ep):
    return ep.path.split(".")[-1] if not ep.path.startswith("datasets.") else ep.path.split(".")[1]


def title(ep):
    label = KIND_LABELS.get(ep.family, ep.family)
    if ep.kind == "cell":
        label = "recurrent cell"
    return f"{py_name(ep)} ({label})"


def description(ep, version):
    lines = [f"Wraps `keras.{ep.path}` from Keras {version}."]
    if any(a.kind == "param" for a in ep.args):
        lines += ["Only the arguments you give are passed on, so Keras' defaults (shown in",
                  "the usage) apply to the others."]
    if ep.kind == "layer":
        lines += ["", "With a Sequential model as `object`, the layer is added to the model and",
                  "the model is returned invisibly; with a tensor or a list of tensors, the",
                  "layer is called on it and its output returned; with `object` missing, the",
                  "layer itself is returned."]
    elif ep.kind == "merge":
        lines += ["", "With `inputs` (plus any further tensors in `...`), the merged tensor is",
                  "returned; without them, the layer."]
    elif ep.kind == "loss":
        kind = "loss" if ep.path.startswith("losses.") else "metric"
        lines += ["", f"Called without `y_true` and `y_pred`, it returns a {kind} object",
                  f"(`keras.{ep.path}`) for `compile()`; with both, it computes the values",
                  f"with `keras.{ep.fn_path}`."]
    elif ep.kind == "application":
        lines += ["", "Use `weights = NULL` for a randomly initialised model; pretrained weights",
                  "are downloaded on first use (where that fails, the error, of class",
                  "`kerasbackup_download_error`, names the URL). The model remembers its",
                  "module, for [application_preprocess_inputs()] and",
                  "[application_decode_predictions()]."]
    elif ep.kind == "dataset":
        lines += ["", "The data is downloaded on first use and cached. Where it cannot be",
                  "downloaded, the error (class `kerasbackup_download_error`) names the URL."]
    if ep.path in INDEXED:
        lines += ["", "Indices are 1-based, as in R (negative ones count from the end), unless",
                  "`zero_indexed = TRUE`."]
    lines += NOTES.get(ep.path, [])
    if ep.helper == "keras_call_set_seed":
        lines += ["", "R's own generator is seeded too ([set.seed()])."]
    if any(a.converter == "as_axis" for a in ep.args):
        lines += ["", "Axes are 1-based, as in R; negative axes count from the end."]
    return lines


# More description, per endpoint (R conventions that differ from Python's).
NOTES = {
    "ops.arange": [
        "", "As in R's `seq()` and keras3, the sequence starts at 1 when `end` is",
        "not given (`op_arange(3)` is 1, 2, 3), and `end` is included unless",
        "`include_end = FALSE` (then the interval is Python's half-open `[start, end)`).",
        "R doubles give floats and R integers ints (`op_arange(3L)` is int32), unless",
        "`dtype` says otherwise; with an integer `dtype`, whole doubles are sent as",
        "integers. `end` may be a scalar tensor (e.g. a dynamic dimension).",
    ],
    "ops.one_hot": [
        "", "As in keras3, only positive values are shifted down in 1-based mode:",
        "0 and negative values pass unchanged. A 0 therefore encodes the first",
        "position, like a 1, so 0-based labels (0 to `num_classes - 1`, as in",
        "[dataset_mnist()]) keep apart only with `zero_indexed = TRUE`;",
        "otherwise labels 0 and 1 share the first position and the last one is",
        "never used. A negative value gives a row of zeros.",
    ],
}

OBJECT_DOC = ("A Sequential model to add the layer to, a tensor (or list of tensors) to call "
              "the layer on, or missing to return the layer.")
INPUTS_DOC = "A list of tensors to merge, or missing to return the layer."

PARAM_DOCS = {
    "name": "Name (a string), or `NULL` for a generated one.",
    "dtype": "Data type (e.g. `\"float32\"`), or `NULL` for the default.",
    "activation": "Activation: a name such as `\"relu\"`, an `activation_*()` function or any "
                  "R function, or `NULL` for none.",
    "recurrent_activation": "Activation of the recurrent step (as for `activation`).",
    "use_bias": "Whether to add a bias vector.",
    "kernel_initializer": "Initializer of the kernel weights: a name or an `initializer_*()` "
                          "object.",
    "bias_initializer": "Initializer of the bias: a name or an `initializer_*()` object.",
    "kernel_regularizer": "Regularizer of the kernel weights (a `regularizer_*()` object), "
                          "or `NULL`.",
    "bias_regularizer": "Regularizer of the bias, or `NULL`.",
    "activity_regularizer": "Regularizer of the layer's output, or `NULL`.",
    "kernel_constraint": "Constraint on the kernel weights (a `constraint_*()` object), or "
                         "`NULL`.",
    "bias_constraint": "Constraint on the bias, or `NULL`.",
    "data_format": "`\"channels_last\"` or `\"channels_first\"`, or `NULL` for "
                   "[config_image_data_format()].",
    "from_logits": "Whether `y_pred` holds logits rather than probabilities.",
    "reduction": "How per-sample values are reduced (e.g. `\"sum_over_batch_size\"`).",
    "learning_rate": "Learning rate: a number or a `learning_rate_schedule_*()` object.",
    "y_true": "True values (an R array or a tensor).",
    "y_pred": "Predicted values (an R array or a tensor).",
    "x": "Input: a tensor, or an R array or number.",
    "x1": "First input: a tensor, or an R array or number.",
    "x2": "Second input: a tensor, or an R array or number.",
    "inputs": "Input tensor(s).",
    "rate": "Fraction of the inputs to drop, in `[0, 1)`.",
    "monitor": "Name of the quantity to monitor, e.g. `\"val_loss\"`.",
    "mode": "Mode (see Keras' documentation for the accepted values).",
    "seed": "Seed: a whole number, a `random_seed_generator()`, or `NULL`.",
    "weights": "`\"imagenet\"`, `NULL` (random initialisation) or a path to a weights file.",
    "include_top": "Whether to include the fully connected classifier at the top.",
    "input_tensor": "Optional tensor to use as the model's input.",
    "pooling": "Pooling of the last feature map when `include_top = FALSE`: `NULL`, "
               "`\"avg\"` or `\"max\"`.",
    "classifier_activation": "Activation of the top layer (as for `activation`).",
    "padding": "`\"valid\"` or `\"same\"` (or numbers where the layer pads by a count).",
    "trainable": "Whether the weights are trainable.",
    "verbose": "Verbosity: 0 (silent) or 1.",
    "zero_indexed": "Whether indices (given and returned) are 0-based, as in Python, rather "
                    "than 1-based.",
}


# Argument help for one endpoint (python path:argument), used instead of
# PARAM_DOCS and the converter's note.
ENDPOINT_PARAM_DOCS = {
    "ops.arange:start": "First value (a number or a scalar tensor); with `end` missing, the "
                        "last value, the sequence then starting at 1.",
    "ops.arange:stop": "Last value (included unless `include_end = FALSE`): a number or a "
                       "scalar tensor.",
    "ops.arange:step": "Spacing between values (negative to count down).",
    "ops.arange:include_end": "Whether `end` is included (`TRUE`, keras3's default) or the "
                              "interval is half-open as in Python (`FALSE`).",
    "ops.vectorized_map:elements": "A tensor (or R array), mapped over its first axis; or a "
                                   "list of them, mapped over together.",
    "ops.vectorized_map:function": "A function (an R function or a Python callable) applied to "
                                   "each slice of `elements`.",
    "ops.one_hot:x": "Class indices (whole numbers or an integer tensor): 1-based, or 0-based "
                     "with `zero_indexed = TRUE`. In 1-based mode a factor gives its level "
                     "codes.",
}


def param_doc(ep, arg):
    key = f"{ep.path}:{arg.name}"
    if key in ENDPOINT_PARAM_DOCS:
        return ENDPOINT_PARAM_DOCS[key]
    conv = arg.converter
    text = PARAM_DOCS.get(arg.name, "")
    notes = {
        "as_axis": "Axis or axes, 1-based (negative values count from the end).",
        "as_tensordot_axes": "A number of axes, or two lists of 1-based axes.",
        "as_shape": "A shape: a vector or list with `NA`/`NULL` for unknown dimensions, or a "
                    "[shape()].",
        "as_integer": "A whole number (sent as an integer).",
        "as_integer_tuple": "A whole number or a vector of them (sent as an int or a tuple).",
        "as_integer_if_whole": "Whole numbers are sent as integers.",
        "as_path": "A file path (`~` is expanded).",
        "as_index_logs_callback": "An R function `function(index, logs)`; the index is 1-based.",
        "as_sequences": "A list of integer vectors.",
        "as_py_array": "An R array or vector, or a tensor.",
    }
    note = notes.get(conv, "")
    if arg.name in ("seed", "padding", "verbose", "rate") or arg.name in DATA_ARGS:
        note = ""
    if arg.name == "y_true" and ep.kind == "loss":
        note = "Omit `y_true` and `y_pred` for the object form."
    text = f"{text} {note}".strip()
    return text or "Passed to Keras as it is (`NULL` becomes `None`)."


def dots_doc(ep):
    if ep.kind in ("layer", "cell"):
        return ("More arguments for the layer, such as `name`, `dtype`, `trainable` or "
                "`input_shape` (the latter for the first layer of a Sequential model).")
    if ep.kind == "merge":
        return "More tensors to merge, and named arguments for the layer (`name`, `dtype`)."
    return "More arguments for Keras (unnamed ones are passed positionally)."


RETURNS = {
    "layer": "The model (invisibly), the layer's output, or the layer, depending on `object`.",
    "merge": "The merged tensor, or the layer when `inputs` is missing.",
    "cell": "A recurrent cell, for [layer_rnn()].",
    "application": "A Keras model.",
    "dataset": "What Keras' loader returns, as R objects: for the data sets, a list of "
               "`train` and `test`, each a list of `x` and `y`.",
}
FAMILY_RETURNS = {
    "activations": "A tensor.",
    "losses": "A loss object, or a tensor of loss values when `y_true` and `y_pred` are given.",
    "metrics": "A metric object, or a tensor of values when `y_true` and `y_pred` are given.",
    "optimizers": "An optimizer.",
    "learning rate schedules": "A learning rate schedule, to pass as an optimizer's "
                               "`learning_rate`.",
    "initializers": "An initializer.",
    "regularizers": "A regularizer.",
    "constraints": "A constraint.",
    "callbacks": "A callback, for `fit()`'s `callbacks`.",
    "random": "A tensor (or a seed generator).",
    "feature space": "A feature specification for [layer_feature_space()].",
}


def returns(ep):
    if ep.kind in RETURNS:
        return RETURNS[ep.kind]
    if ep.family in FAMILY_RETURNS:
        return FAMILY_RETURNS[ep.family]
    if ep.helper == "keras_call_shape":
        return "A [shape()]."
    if ep.family.endswith(" ops"):
        return "A tensor, or what the operation returns (a list of tensors, a shape, ...)."
    return f"What `keras.{ep.path}` returns, converted to R where reticulate converts it."
