# Methods keras3 calls on layers and models: preprocessing state, metric
# state, parameter counts, state trees, quantization; and how layer and
# loss objects behave when R calls them.

#' Fit a preprocessing layer's state to data
#'
#' For layers such as `layer_normalization()`, `layer_text_vectorization()`
#' or `layer_string_lookup()`: computes their state (mean and variance, a
#' vocabulary, ...) from data before training.
#'
#' @param object A preprocessing layer.
#' @param data An R array or vector, a tensor or a `tf.data.Dataset`.
#' @param ... More arguments to the layer's `adapt()`.
#' @param batch_size Optional number of samples per batch.
#' @param steps Optional number of batches to read.
#' @returns The layer, invisibly.
#' @export
adapt <- function(object, data, ..., batch_size = NULL, steps = NULL) {
  if (!is_py_object(data)) data <- as_py_data(data)
  args <- list(data, ...)
  if (!is.null(batch_size)) args$batch_size <- as.integer(batch_size)
  if (!is.null(steps)) args$steps <- as.integer(steps)
  with_py_errors(do.call(object$adapt, args))
  invisible(object)
}

#' Reset the state of a metric or stateful layer
#'
#' @param object A metric, or a layer or model with state (e.g. a stateful
#'   RNN).
#' @returns The object, invisibly.
#' @export
reset_state <- function(object) {
  with_py_errors(object$reset_state())
  invisible(object)
}

#' Number of weights of a layer or model
#'
#' @param object A built layer or model.
#' @returns The number of scalar weights.
#' @export
count_params <- function(object) {
  with_py_errors(object$count_params())
}

#' Get or set the vocabulary of a lookup or text-vectorization layer
#'
#' @param object A `StringLookup`, `IntegerLookup` or `TextVectorization`
#'   layer.
#' @param include_special_tokens Whether to include the padding and
#'   out-of-vocabulary tokens.
#' @param vocabulary A character (or integer) vector, or a file path.
#' @param idf_weights Optional inverse-document-frequency weights.
#' @param ... More arguments to the layer's `set_vocabulary()`.
#' @returns `get_vocabulary()`: the vocabulary. `set_vocabulary()`: the
#'   layer, invisibly.
#' @export
get_vocabulary <- function(object, include_special_tokens = TRUE) {
  with_py_errors(object$get_vocabulary(
    include_special_tokens = include_special_tokens))
}

#' @rdname get_vocabulary
#' @export
set_vocabulary <- function(object, vocabulary, idf_weights = NULL, ...) {
  with_py_errors(object$set_vocabulary(vocabulary, idf_weights = idf_weights, ...))
  invisible(object)
}

#' A model's state as a nested list, and back
#'
#' `get_state_tree()` returns the values of a model's variables (trainable,
#' non-trainable, optimizer and metric) as nested named lists;
#' `set_state_tree()` assigns such a tree back.
#'
#' @param object A built Keras model.
#' @param value_format `"numpy_array"` (R arrays), `"python_list"` or
#'   `"backend_tensor"`.
#' @param state_tree A tree from `get_state_tree()`.
#' @returns `get_state_tree()`: a nested list. `set_state_tree()`: the
#'   model, invisibly.
#' @export
get_state_tree <- function(object, value_format = "numpy_array") {
  with_py_errors(object$get_state_tree(value_format = value_format))
}

#' @rdname get_state_tree
#' @export
set_state_tree <- function(object, state_tree) {
  with_py_errors(object$set_state_tree(state_tree))
  invisible(object)
}

#' Quantize a model's or layer's weights
#'
#' @param object A built Keras model or layer.
#' @param mode `"int8"`, `"int4"`, `"float8"` or another mode Keras
#'   supports.
#' @param ... More arguments to Keras' `quantize()`.
#' @returns The object, invisibly (it is modified in place).
#' @export
quantize_weights <- function(object, mode, ...) {
  with_py_errors(object$quantize(mode, ...))
  invisible(object)
}

py_to_r_wrapper.keras.src.layers.layer.Layer <- function(x) {
  # A layer (or model) called from R composes like a layer function: on a
  # Sequential model it is added to it, on tensors it is called.
  force(x)
  function(object, ...) {
    if (missing(object)) return(x(...))
    compose_layer(object, x, ...)
  }
}

py_to_r_wrapper.keras.src.losses.loss.Loss <- function(x) {
  # A loss object called from R takes keras3's argument names (`y_true`,
  # `y_pred`, also matched by `y = ` as R matches partial names).
  force(x)
  function(y_true, y_pred, sample_weight = NULL) {
    x(y_true, y_pred, sample_weight = sample_weight)
  }
}
