# Models: creation, compile(), fit(), evaluate(), predict(), weights.

#' @importFrom generics compile fit
#' @export
generics::compile

#' @export
generics::fit

#' @importFrom magrittr %>%
#' @export
magrittr::`%>%`

#' Configure a model for training
#'
#' @param object A Keras model.
#' @param optimizer An optimizer object (e.g. [optimizer_sgd()]) or its name.
#' @param loss A loss name (e.g. `"mse"`) or loss object.
#' @param metrics A list or character vector of metrics.
#' @param ... More arguments to Keras' `Model.compile()`.
#' @returns The model, invisibly (it is modified in place).
#' @method compile keras.src.models.model.Model
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential() %>% layer_dense(1)
#' model %>% compile(optimizer = optimizer_sgd(), loss = "mse")
compile.keras.src.models.model.Model <- function(object, optimizer = "rmsprop",
                                                 loss = NULL, metrics = NULL,
                                                 ...) {
  # R functions (and this package's loss_*/metric_* wrappers) become callables.
  if (!is.null(metrics)) metrics <- as_callable(as.list(metrics), default_name = "custom_metric")
  loss <- as_callable(loss, default_name = "custom_loss")
  with_py_errors(object$compile(optimizer = optimizer, loss = loss,
                                metrics = metrics, ...))
  invisible(object)
}

#' Train a model, resuming exactly from a backup
#'
#' Trains like keras3's `fit()`, with the same arguments. The data are fed
#' by kerasbackup's driver, which keeps Keras' train step, callbacks and
#' history but owns the data order: each epoch's shuffle comes from a seed
#' stored in the checkpoint, so a run restored by
#' [callback_backup_and_restore()] continues at the exact next batch with the
#' order the uninterrupted run would have used. The returned history covers
#' the whole run, epochs restored from the checkpoint included.
#'
#' @param object A compiled Keras model.
#' @param x,y Training data: R arrays or matrices, tensors, or lists of them;
#'   `x` may also be a `tf.data.Dataset` or other Python iterable (resumed at
#'   the right epoch and batch, but not in the same order).
#' @param batch_size Integer, samples per batch. Defaults to 32.
#' @param epochs Integer, number of epochs to train.
#' @param verbose `"auto"`, 0, 1 or 2.
#' @param callbacks A list of callbacks.
#' @param validation_split Fraction of the data (taken from the end, before
#'   shuffling) to hold out for validation.
#' @param validation_data `list(x, y)` or `list(x, y, sample_weight)` used
#'   for validation.
#' @param shuffle Whether to shuffle the training data before each epoch.
#' @param class_weight Optional named list mapping class indices to weights.
#' @param sample_weight Optional vector of per-sample weights.
#' @param initial_epoch Integer, the epoch (1-based) to start at.
#' @param steps_per_epoch Optional integer, batches per epoch.
#' @param validation_batch_size Optional batch size for validation.
#' @param validation_freq Integer, validate every `validation_freq` epochs.
#' @param ... Unused; an error if given.
#' @returns A `keras_training_history` object with `params` and `metrics`.
#' @method fit keras.src.models.model.Model
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential() %>% layer_dense(1)
#' model %>% compile(optimizer = optimizer_sgd(), loss = "mse")
#' x <- matrix(runif(40), ncol = 4)
#' history <- model %>% fit(x, rowSums(x), epochs = 2, verbose = 0)
#' as.data.frame(history)
fit.keras.src.models.model.Model <- function(object, x = NULL, y = NULL, ...,
                                             batch_size = NULL, epochs = 1L,
                                             verbose = getOption("keras.verbose", "auto"),
                                             callbacks = NULL,
                                             validation_split = 0,
                                             validation_data = NULL,
                                             shuffle = TRUE,
                                             class_weight = NULL,
                                             sample_weight = NULL,
                                             initial_epoch = 1L,
                                             steps_per_epoch = NULL,
                                             validation_batch_size = NULL,
                                             validation_freq = 1L) {
  rlang::check_dots_empty()
  if (!is.null(batch_size) && !is_whole_number(batch_size)) {
    abort_invalid_arg("batch_size", batch_size, "a positive whole number")
  }
  if (!is_whole_number(epochs, min = 0)) {
    abort_invalid_arg("epochs", epochs, "a whole number >= 0")
  }
  if (!is_whole_number(initial_epoch, min = 1)) {
    abort_invalid_arg("initial_epoch", initial_epoch, "a whole number >= 1")
  }
  if (!(is.numeric(validation_split) && length(validation_split) == 1 &&
        !is.na(validation_split) && validation_split >= 0 &&
        validation_split < 1)) {
    abort_invalid_arg("validation_split", validation_split,
                      "a number in [0, 1)")
  }
  if (!is.null(callbacks) && !is.list(callbacks)) callbacks <- list(callbacks)
  if (!is.null(validation_data)) validation_data <- unname(as.list(validation_data))
  if (!is.null(class_weight)) {
    class_weight <- stats::setNames(as.list(class_weight),
                                    names(class_weight) %||% seq_along(class_weight) - 1L)
    names_int <- as.integer(names(class_weight))
    class_weight <- reticulate::py_dict(as.list(names_int), unname(class_weight))
  }
  verbose <- resolve_verbose(verbose)
  history <- with_py_errors(py_kb()$fit(
    object,
    x = as_py_data(x), y = as_py_data(y),
    batch_size = as_int_or_null(batch_size),
    epochs = as.integer(epochs),
    verbose = verbose,
    callbacks = callbacks,
    validation_split = validation_split,
    validation_data = validation_data,
    shuffle = shuffle,
    class_weight = class_weight,
    sample_weight = as_py_data(sample_weight),
    initial_epoch = as.integer(initial_epoch) - 1L,
    steps_per_epoch = as_int_or_null(steps_per_epoch),
    validation_batch_size = as_int_or_null(validation_batch_size),
    validation_freq = as.integer(validation_freq)
  ))
  to_keras_training_history(history)
}

#' Evaluate a model
#'
#' `evaluate()` is a generic of its own, as in keras3: `generics::evaluate()`
#' dispatches on an argument named `x`, which here names the data.
#'
#' @param object A compiled Keras model.
#' @param x,y Test data.
#' @param ... More arguments to Keras' `Model.evaluate()`.
#' @param batch_size Integer, samples per batch.
#' @param verbose 0, 1 or 2.
#' @param sample_weight Optional per-sample weights.
#' @returns A named numeric vector of the loss and metrics.
#' @method evaluate keras.src.models.model.Model
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential() %>% layer_dense(1)
#' model %>% compile(optimizer = optimizer_sgd(), loss = "mse")
#' x <- matrix(runif(40), ncol = 4)
#' model %>% evaluate(x, rowSums(x), verbose = 0)
evaluate.keras.src.models.model.Model <- function(object, x = NULL, y = NULL,
                                                  ..., batch_size = NULL,
                                                  verbose = 0L,
                                                  sample_weight = NULL) {
  out <- with_py_errors(object$evaluate(
    x = as_py_data(x), y = as_py_data(y), ...,
    batch_size = as_int_or_null(batch_size), verbose = as.integer(verbose),
    sample_weight = as_py_data(sample_weight), return_dict = TRUE
  ))
  unlist(out)
}

#' @rdname evaluate.keras.src.models.model.Model
#' @export
evaluate <- function(object, ...) UseMethod("evaluate")

#' Generate predictions from a model
#'
#' @param object A Keras model.
#' @param x Input data.
#' @param ... More arguments to Keras' `Model.predict()`.
#' @param batch_size Integer, samples per batch.
#' @param verbose 0, 1 or 2.
#' @returns An R array of predictions.
#' @importFrom stats predict
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' predict(model, matrix(runif(8), ncol = 4), verbose = 0)
predict.keras.src.models.model.Model <- function(object, x, ...,
                                                 batch_size = NULL,
                                                 verbose = 0L) {
  out <- with_py_errors(object$predict(
    as_py_data(x), ..., batch_size = as_int_or_null(batch_size),
    verbose = as.integer(verbose)
  ))
  out
}

#' Get or set a model's weights
#'
#' @param object A Keras model or layer.
#' @param weights A list of R arrays, as returned by `get_weights()`.
#' @returns `get_weights()`: a list of R arrays. `set_weights()`: the
#'   object, invisibly.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' w <- get_weights(model)
#' set_weights(model, w)
get_weights <- function(object) {
  with_py_errors(object$get_weights())
}

#' @rdname get_weights
#' @export
set_weights <- function(object, weights) {
  n <- length(object$weights)
  if (!is.list(weights) || length(weights) != n) {
    abort_invalid_arg("weights", weights,
                      sprintf("a list of %d arrays, as from get_weights()", n))
  }
  weights <- lapply(weights, function(w) if (is.null(dim(w))) array(w) else w)
  with_py_errors(object$set_weights(weights))
  invisible(object)
}

# ---------------------------------------------------------------- helpers

resolve_verbose <- function(verbose) {
  if (identical(verbose, "auto")) {
    return(if (interactive()) 1L else 2L)
  }
  if (!(is.numeric(verbose) && length(verbose) == 1 && verbose %in% 0:2)) {
    abort_invalid_arg("verbose", verbose, '"auto", 0, 1 or 2',
                      call = rlang::caller_env())
  }
  as.integer(verbose)
}

as_int_or_null <- function(x) if (is.null(x)) NULL else as.integer(x)

# R vectors become 1-d arrays; doubles stay float64 and Keras casts them.
as_py_data <- function(x) {
  if (is.null(x) || inherits(x, "python.builtin.object")) return(x)
  if (is.list(x) && !is.data.frame(x)) return(lapply(x, as_py_data))
  if (is.data.frame(x)) x <- as.matrix(x)
  if (is.factor(x)) x <- as.integer(x) - 1L
  if (is.null(dim(x))) x <- array(x)
  reticulate::np_array(x)
}

`%||%` <- function(x, y) if (is.null(x)) y else x
