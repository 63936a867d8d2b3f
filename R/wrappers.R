# The helpers that the generated wrappers (R/layers-*.R, R/ops-*.R, ...)
# call: each captures its caller's arguments, converts them and calls the
# Keras object at `path` (a dotted path below `keras`).

#' Call a Keras function or class with the caller's arguments
#' @noRd
keras_call <- function(path, converters = list(), positional = character(),
                       rename = character()) {
  args <- capture_args(converters, rename = rename, envir = parent.frame(),
                       fn = sys.function(sys.parent()))
  args <- convert_tensor_inputs(path, args, converters)
  py_call_args(keras_object(path), args, positional)
}

# Converters every layer gets for the base Layer's keyword arguments.
layer_kwarg_converters <- list(
  input_shape = as_shape, batch_input_shape = as_shape, batch_shape = as_shape,
  batch_size = as_integer, input_dim = as_integer
)

#' Create a layer and compose it with `object`
#'
#' The wrapper's first formal is `object`: a Sequential model gets the layer
#' added (and is returned invisibly); a tensor, a list of tensors or an array
#' is passed through the layer (the output is returned); when missing or
#' `NULL`, the layer itself is returned.
#' @noRd
keras_layer <- function(path, converters = list(), positional = character(),
                        rename = character()) {
  envir <- parent.frame()
  # `object` is forced before the layer is made, so a pipe chain creates its
  # layers in reading order.
  object <- if (eval(quote(missing(object)), envir)) NULL else get("object", envir)
  args <- capture_args(c(converters, layer_kwarg_converters), ignore = "object",
                       rename = rename, envir = envir, fn = sys.function(sys.parent()))
  layer <- py_call_args(keras_object(path), args, positional)
  compose_layer(object, layer)
}

#' Compose a layer with a Sequential model or inputs
#'
#' Used by the layer wrappers and by layers made from R classes.
#' @param object A Sequential model, a tensor, a list of tensors, an array,
#'   or `NULL`.
#' @param layer A Keras layer.
#' @param ... More arguments to the layer's call (not for Sequential).
#' @returns The layer's output, the model (invisibly), or the layer.
#' @noRd
compose_layer <- function(object, layer, ...) {
  if (is.null(object)) return(layer)
  if (inherits(object, "keras.src.models.sequential.Sequential")) {
    if (...length()) {
      abort_invalid_arg("...", list(...),
                        "empty when the layer is added to a Sequential model")
    }
    with_py_errors(object$add(layer))
    return(invisible(object))
  }
  with_py_errors(layer(object, ...))
}

#' A merging layer: `inputs` (plus unnamed arguments) are the tensors to merge
#' @noRd
keras_merge_layer <- function(path, converters = list()) {
  envir <- parent.frame()
  args <- capture_args(c(converters, layer_kwarg_converters), ignore = "inputs",
                       envir = envir, fn = sys.function(sys.parent()))
  nms <- names(args) %||% rep("", length(args))
  extra <- unname(args[!nzchar(nms)])
  inputs <- if (eval(quote(missing(inputs)), envir)) NULL else get("inputs", envir)
  if (!is.null(inputs) && (!is.list(inputs) || is_py_object(inputs))) {
    inputs <- list(inputs)
  }
  inputs <- c(inputs, extra)
  layer <- py_call_args(keras_object(path), args[nzchar(nms)])
  if (!length(inputs)) return(layer)
  with_py_errors(layer(inputs))
}

#' A loss or metric with a class form and a function form
#'
#' Called without `y_true` and `y_pred`, the wrapper makes the class (to
#' pass to `compile()`); with them, it computes the values.
#' @noRd
keras_loss <- function(class_path, fn_path, converters = list()) {
  envir <- parent.frame()
  as_class <- eval(quote(missing(y_true) && missing(y_pred)), envir)
  converters <- c(converters, list(y_true = as_py_array, y_pred = as_py_array))
  args <- capture_args(converters, envir = envir, fn = sys.function(sys.parent()))
  py_call_args(keras_object(if (as_class) class_path else fn_path), args)
}

#' A Keras application (a model constructor)
#'
#' The model remembers which `keras.applications` module made it, for
#' [application_preprocess_inputs()] and [application_decode_predictions()].
#' @noRd
keras_application <- function(path, module, converters = list()) {
  args <- capture_args(converters, envir = parent.frame(),
                       fn = sys.function(sys.parent()))
  # weights = "imagenet" downloads the weights on first use
  model <- with_download_errors(py_call_args(keras_object(path), args))
  attr(model, "keras_application_module") <- module
  model
}

#' set_random_seed(): Keras' generators and R's own
#' @noRd
keras_call_set_seed <- function(path, converters = list()) {
  seed <- get("seed", parent.frame())
  if (!is_whole_number(seed, min = 0)) {
    abort_invalid_arg("seed", seed, "a whole number >= 0")
  }
  set.seed(seed)
  py_call_args(keras_object(path), list(seed = as.integer(seed)))
  invisible()
}

#' A call that may download: a failed download becomes a classed error
#' that names the URL
#' @noRd
keras_call_download <- function(path, converters = list(), positional = character()) {
  args <- capture_args(converters, envir = parent.frame(),
                       fn = sys.function(sys.parent()))
  with_download_errors(py_call_args(keras_object(path), args, positional))
}

with_download_errors <- function(expr) {
  tryCatch(expr, kerasbackup_python_error = function(e) {
    msg <- conditionMessage(e)
    url <- regmatches(msg, regexpr("(?<=URL fetch failure on )\\S+?(?=: )", msg, perl = TRUE))
    if (!length(url)) stop(e)
    cli::cli_abort(
      c("Could not download {.url {url}}.",
        x = sub("^[A-Za-z.]*: ", "", msg),
        i = "Download it where the network allows and copy it to Keras' cache
             ({.path ~/.keras/datasets} for the data sets), or pass a local path."),
      class = c("kerasbackup_download_error", "kerasbackup_error"),
      url = url, parent = e, call = NULL
    )
  })
}

#' A dataset loader: `((x_train, y_train), (x_test, y_test))` becomes
#' `list(train = list(x, y), test = list(x, y))`
#' @noRd
keras_dataset <- function(path, converters = list()) {
  args <- capture_args(converters, envir = parent.frame(),
                       fn = sys.function(sys.parent()))
  out <- with_download_errors(py_call_args(keras_object(path), args))
  split <- function(pair) list(x = pair[[1L]], y = pair[[2L]])
  list(train = split(out[[1L]]), test = split(out[[2L]]))
}

#' decode_predictions(): one data frame per sample
#' @noRd
keras_call_decode_predictions <- function(path, converters = list()) {
  args <- capture_args(converters, envir = parent.frame(),
                       fn = sys.function(sys.parent()))
  args$preds <- as_py_array(args$preds)
  decoded_predictions(with_download_errors(py_call_args(keras_object(path), args)))
}

decoded_predictions <- function(out) {
  lapply(out, function(rows) {
    data.frame(
      class_name = vapply(rows, function(r) as.character(r[[1L]]), ""),
      class_description = vapply(rows, function(r) as.character(r[[2L]]), ""),
      score = vapply(rows, function(r) as.numeric(r[[3L]]), 0)
    )
  })
}

#' An op that takes or returns indices: 1-based in R unless the wrapper's
#' `zero_indexed` is `TRUE`
#'
#' `index_args` are shifted down before the call (a 0 among them is an
#' error, except in `zero_passes`, where 0s pass unchanged as keras3 passes
#' them); `index_result` says which result holds indices to shift up: `TRUE`
#' for the whole result, a number for that element of a list result.
#' @noRd
keras_call_indexed <- function(path, converters = list(), positional = character(),
                               index_args = character(), index_result = FALSE,
                               zero_passes = character()) {
  envir <- parent.frame()
  zero <- get("zero_indexed", envir)
  if (!is_flag(zero)) abort_invalid_arg("zero_indexed", zero, "`TRUE` or `FALSE`")
  if (!zero) {
    converters[index_args] <- list(as_py_index)
    converters[intersect(zero_passes, index_args)] <- list(function(x, arg) {
      as_py_index(x, arg, zero = "pass")
    })
  }
  args <- capture_args(converters, ignore = "zero_indexed", envir = envir,
                       fn = sys.function(sys.parent()))
  args <- convert_tensor_inputs(path, args, converters)
  out <- py_call_args(keras_object(path), args, positional)
  # a (named) tuple of tensors, e.g. top_k's (values, indices), as an R list
  if (is.numeric(index_result) && is_py_object(out)) {
    out <- reticulate::import_builtins()$list(out)
  }
  if (zero || isFALSE(index_result)) return(out)
  one_up <- function(x) with_py_errors(keras_object("ops.add")(x, 1L))
  if (isTRUE(index_result)) return(one_up(out))
  out[[index_result]] <- one_up(out[[index_result]])
  out
}

#' op_arange(): keras3's R conventions over `keras.ops.arange`
#'
#' With `end` missing the sequence runs from 1 to `start`; `end` is included
#' unless `include_end` is `FALSE`. R doubles stay floats (whole ones become
#' integers only for an integer `dtype`).
#' @noRd
keras_call_arange <- function(path, converters = list(), positional = character(),
                              rename = character()) {
  envir <- parent.frame()
  include_end <- get("include_end", envir)
  if (!is_flag(include_end)) {
    abort_invalid_arg("include_end", include_end, "`TRUE` or `FALSE`", call = envir)
  }
  if (eval(quote(missing(start)), envir)) {
    cli::cli_abort("{.arg start} is missing: give a number or a scalar tensor.",
                   class = c("kerasbackup_invalid_argument", "kerasbackup_error"),
                   arg = "start", call = envir)
  }
  args <- capture_args(converters, ignore = "include_end", rename = rename,
                       envir = envir, fn = sys.function(sys.parent()))
  if (is.null(args$stop)) {
    args$stop <- args$start
    args$start <- if (is.double(args$stop)) 1 else 1L
  }
  args$step <- args$step %||% 1L
  if (!is.null(args$dtype) &&
      isTRUE(with_py_errors(keras_object("backend.is_int_dtype")(args$dtype)))) {
    for (name in c("start", "stop", "step")) {
      args[name] <- list(as_integer_if_whole(args[[name]]))
    }
  }
  if (include_end) {
    args$stop <- if (is_py_object(args$stop) || is_py_object(args$step)) {
      with_py_errors(keras_object("ops.add")(args$stop, args$step))
    } else {
      args$stop + args$step
    }
  }
  py_call_args(keras_object(path), args, positional)
}

#' op_shape(): the tensor's shape as a shape() (dynamic dimensions stay tensors)
#' @noRd
keras_call_shape <- function(path, converters = list()) {
  args <- capture_args(converters, envir = parent.frame(),
                       fn = sys.function(sys.parent()))
  out <- py_call_args(keras_object(path), args)
  new_shape(lapply(as.list(out), function(d) d))
}
