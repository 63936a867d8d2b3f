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
#' @param loss_weights Optional weights of the losses of a model with several
#'   outputs: a list (or vector) in the outputs' order, or named by output.
#' @param weighted_metrics Metrics weighted by `sample_weight` or
#'   `class_weight` in [fit()][fit.keras.src.models.model.Model]: one metric
#'   or a list or character vector of them, as `metrics`.
#' @param run_eagerly Whether to run the model's steps eagerly (for
#'   debugging).
#' @param steps_per_execution Integer, batches to run in each compiled call.
#' @param jit_compile `"auto"`, `TRUE` or `FALSE`: whether to compile the
#'   steps with XLA.
#' @param auto_scale_loss Whether to scale the loss of a mixed-precision
#'   model (float16) to avoid underflow.
#' @returns The model, invisibly (it is modified in place).
#' @method compile keras.src.models.model.Model
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential() %>% layer_dense(1)
#' model %>% compile(optimizer = optimizer_sgd(), loss = "mse")
compile.keras.src.models.model.Model <- function(object, optimizer = "rmsprop",
                                                 loss = NULL, metrics = NULL,
                                                 ...,
                                                 loss_weights = NULL,
                                                 weighted_metrics = NULL,
                                                 run_eagerly = FALSE,
                                                 steps_per_execution = 1L,
                                                 jit_compile = "auto",
                                                 auto_scale_loss = TRUE) {
  # R functions become Python callables named after the argument (as keras3
  # does), so a saved model names them and load_model() can find them.
  loss <- as_callable(loss, "loss", default_name = arg_symbol_name(
    substitute(loss), "custom_loss"))
  metrics <- as_metrics(metrics, "metrics", "custom_metric_")
  # The arguments after `...` (and those in it) go only when given, leaving
  # Keras its defaults; capture_args() drops a trailing comma, as keras3 does.
  rest <- capture_args(list(
    weighted_metrics = function(x, arg) as_metrics(x, arg, "custom_weighted_metric_"),
    steps_per_execution = as_integer
  ), ignore = c("object", "optimizer", "loss", "metrics"))
  args <- c(list(optimizer = optimizer, loss = loss, metrics = metrics), rest)
  with_py_errors(do.call(object$compile, args))
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
#' @param verbose `"auto"`, 0, 1 or 2 (`TRUE` and `FALSE` mean 1 and 0, as in keras3).
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
#' @param validation_steps Optional number of batches of `validation_data`
#'   to evaluate at the end of each epoch (all by default).
#' @param validation_batch_size Optional batch size for validation.
#' @param validation_freq Integer, validate every `validation_freq` epochs.
#' @param view_metrics `"auto"`, `TRUE` or `FALSE`. Accepted so that keras3
#'   code runs unchanged, but it has no effect: kerasbackup has no live
#'   metrics viewer (plot the returned history instead).
#' @param ... Unused; an error if given.
#' @returns A `keras_training_history` object with `params` and `metrics`.
#' @method fit keras.src.models.model.Model
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
                                             validation_steps = NULL,
                                             validation_batch_size = NULL,
                                             validation_freq = 1L,
                                             view_metrics = getOption("keras.view_metrics", "auto")) {
  rlang::check_dots_empty()
  check_fit_args()
  if (!is.null(callbacks) && !is.list(callbacks)) callbacks <- list(callbacks)
  validation_data <- as_validation_data(validation_data)
  class_weight <- as_class_weight(class_weight)
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
    validation_steps = as_int_or_null(validation_steps),
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
#' @param x,y Test data, in the forms [fit()][fit.keras.src.models.model.Model]
#'   takes (arrays, lists, named lists, a `tf.data.Dataset`).
#' @param ... More arguments to Keras' `Model.evaluate()`.
#' @param batch_size Integer, samples per batch.
#' @param verbose `"auto"`, 0, 1 or 2 (`TRUE` and `FALSE` mean 1 and 0, as in keras3).
#' @param sample_weight Optional per-sample weights.
#' @param steps Optional number of batches to evaluate.
#' @param callbacks Optional list of callbacks.
#' @returns A named list of the loss and metrics.
#' @method evaluate keras.src.models.model.Model
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential() %>% layer_dense(1)
#' model %>% compile(optimizer = optimizer_sgd(), loss = "mse")
#' x <- matrix(runif(40), ncol = 4)
#' model %>% evaluate(x, rowSums(x), verbose = 0)
evaluate.keras.src.models.model.Model <- function(object, x = NULL, y = NULL,
                                                  ..., batch_size = NULL,
                                                  verbose = getOption("keras.verbose", "auto"),
                                                  sample_weight = NULL,
                                                  steps = NULL,
                                                  callbacks = NULL) {
  check_optional_count(batch_size, "batch_size")
  check_optional_count(steps, "steps")
  if (!is.null(callbacks) && !is.list(callbacks)) callbacks <- list(callbacks)
  args <- c(list(
    x = as_py_data(x), y = as_py_data(y),
    batch_size = as_int_or_null(batch_size), verbose = resolve_verbose(verbose),
    sample_weight = as_py_data(sample_weight), steps = as_int_or_null(steps),
    callbacks = callbacks, return_dict = TRUE
  ), rlang::list2(...))
  out <- with_py_errors(do.call(object$evaluate, args))
  as_metric_list(out)
}

#' @rdname evaluate.keras.src.models.model.Model
#' @export
evaluate <- function(object, ...) UseMethod("evaluate")

#' Generate predictions from a model
#'
#' @param object A Keras model.
#' @param x Input data: an R array, a list of them (named by input for a
#'   named list), or a `tf.data.Dataset`.
#' @param ... More arguments to Keras' `Model.predict()`.
#' @param batch_size Integer, samples per batch.
#' @param verbose `"auto"`, 0, 1 or 2 (`TRUE` and `FALSE` mean 1 and 0, as in keras3).
#' @param steps Optional number of batches to predict.
#' @param callbacks Optional list of callbacks.
#' @returns An R array of predictions, or a list of them for a model with
#'   several outputs.
#' @importFrom stats predict
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' predict(model, matrix(runif(8), ncol = 4), verbose = 0)
predict.keras.src.models.model.Model <- function(object, x, ...,
                                                 batch_size = NULL,
                                                 verbose = getOption("keras.verbose", "auto"),
                                                 steps = NULL,
                                                 callbacks = NULL) {
  check_optional_count(batch_size, "batch_size")
  check_optional_count(steps, "steps")
  if (!is.null(callbacks) && !is.list(callbacks)) callbacks <- list(callbacks)
  args <- c(list(
    as_py_data(x), batch_size = as_int_or_null(batch_size),
    verbose = resolve_verbose(verbose), steps = as_int_or_null(steps),
    callbacks = callbacks
  ), rlang::list2(...))
  with_py_errors(do.call(object$predict, args))
}

#' Get or set a model's weights
#'
#' @param object A Keras model or layer.
#' @param trainable Which weights `get_weights()` returns: `NA` (the
#'   default) all of them, `TRUE` the trainable ones only, `FALSE` the
#'   non-trainable ones only (such as batch normalization's moving statistics).
#' @param weights A list of R arrays, as returned by `get_weights()`.
#' @returns `get_weights()`: a list of R arrays. `set_weights()`: the
#'   object, invisibly.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' w <- get_weights(model)
#' set_weights(model, w)
get_weights <- function(object, trainable = NA) {
  if (!(is.logical(trainable) && length(trainable) == 1L)) {
    abort_invalid_arg("trainable", trainable, "`NA` (all weights), `TRUE` or `FALSE`")
  }
  if (is.na(trainable)) return(with_py_errors(object$get_weights()))
  weights <- if (trainable) object$trainable_weights else object$non_trainable_weights
  with_py_errors(lapply(weights, function(w) w$numpy()))
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

# compile()'s metrics: one metric (a name, function or object) or a
# list/vector of them, as a list; R functions become Python callables named
# by their list name or `prefix` and their position.
as_metrics <- function(metrics, arg, prefix) {
  if (is.null(metrics)) return(NULL)
  metrics <- if (is.function(metrics) || is_py_object(metrics)) list(metrics)
             else as.list(metrics)
  fn_names <- rlang::names2(metrics)
  for (i in seq_along(metrics)) {
    if (is.function(metrics[[i]]) && !is_py_object(metrics[[i]])) {
      metrics[[i]] <- as_callable(metrics[[i]], arg, default_name =
        if (nzchar(fn_names[[i]])) fn_names[[i]] else paste0(prefix, i))
    }
  }
  metrics
}

resolve_verbose <- function(verbose) {
  if (identical(verbose, "auto")) {
    return(if (interactive()) 1L else 2L)
  }
  if (is_flag(verbose)) return(as.integer(verbose))
  if (!(is.numeric(verbose) && length(verbose) == 1 && verbose %in% 0:2)) {
    abort_invalid_arg("verbose", verbose, '"auto", 0, 1, 2, `TRUE` or `FALSE`',
                      call = rlang::caller_env())
  }
  as.integer(verbose)
}

as_int_or_null <- function(x) if (is.null(x)) NULL else as.integer(x)

# The name of a symbol passed as an argument (`loss = my_loss` gives
# "my_loss"), or `default`.
arg_symbol_name <- function(expr, default) {
  if (is.symbol(expr)) as.character(expr) else default
}

# ------------------------------------------------------------ data

# R data as Keras takes it: vectors become 1-d arrays, matrices and arrays
# keep their shape (doubles stay float64 and Keras casts them), data frames
# become matrices, factors 0-based integer codes. Unnamed lists (several
# inputs or outputs) become Python lists, named lists dicts matched to the
# input or output names. Python objects (tensors, tf.data datasets) pass as
# they are.
as_py_data <- function(x) {
  if (is.null(x) || inherits(x, "python.builtin.object")) return(x)
  if (is.list(x) && !is.data.frame(x)) return(lapply(x, as_py_data))
  if (is.data.frame(x)) x <- as.matrix(x)
  if (is.factor(x)) x <- as.integer(x) - 1L
  if (!is.atomic(x)) {
    abort_invalid_arg("x", x, "R arrays, lists of them, tensors or a dataset",
                      call = rlang::caller_env())
  }
  if (is.null(dim(x))) x <- array(x)
  as_numpy(x)
}

# validation_data: list(x, y) or list(x, y, sample_weight), each part
# converted like the training data; or a dataset, passed as it is.
as_validation_data <- function(data) {
  if (is.null(data) || inherits(data, "python.builtin.object")) return(data)
  if (!is.list(data) || !length(data) %in% 2:3) {
    abort_invalid_arg("validation_data", data,
                      "list(x, y), list(x, y, sample_weight) or a dataset",
                      call = rlang::caller_env())
  }
  lapply(unname(data), as_py_data)
}

# class_weight: a named list or vector from class index (0-based, as in
# Keras) to weight, or an unnamed one in class order.
as_class_weight <- function(class_weight) {
  if (is.null(class_weight)) return(NULL)
  keys <- names(class_weight) %||% (seq_along(class_weight) - 1L)
  reticulate::py_dict(as.list(as.integer(keys)),
                      lapply(unname(as.list(class_weight)), as.numeric))
}

`%||%` <- function(x, y) if (is.null(x)) y else x
