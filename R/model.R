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
  # R functions become Python callables named after the argument (as keras3
  # does), so a saved model names them and load_model() can find them.
  loss <- as_callable(loss, "loss", default_name = arg_symbol_name(
    substitute(loss), "custom_loss"))
  if (!is.null(metrics)) {
    # One metric (a name, function or object) or a list/vector of them.
    metrics <- if (is.function(metrics) || is_py_object(metrics)) list(metrics)
               else as.list(metrics)
    fn_names <- rlang::names2(metrics)
    for (i in seq_along(metrics)) {
      if (is.function(metrics[[i]]) && !is_py_object(metrics[[i]])) {
        metrics[[i]] <- as_callable(metrics[[i]], "metrics", default_name =
          if (nzchar(fn_names[[i]])) fn_names[[i]] else paste0("custom_metric_", i))
      }
    }
  }
  # list2() lets a call end with a trailing comma, as keras3's do.
  args <- c(list(optimizer = optimizer, loss = loss, metrics = metrics),
            rlang::list2(...))
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
                                             validation_steps = NULL,
                                             validation_batch_size = NULL,
                                             validation_freq = 1L) {
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
#' @export
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
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' predict(model, matrix(runif(8), ncol = 4), verbose = 0)
predict.keras.src.models.model.Model <- function(object, x, ...,
                                                 batch_size = NULL,
                                                 verbose = getOption("keras.verbose", "auto"),
                                                 steps = NULL,
                                                 callbacks = NULL) {
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
  reticulate::np_array(x)
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
