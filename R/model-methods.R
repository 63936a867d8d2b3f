# What keras3 users call on a built model: summary(), print(), plot(),
# layer access, freezing, and the *_on_batch() steps.

#' Print a summary of a Keras model
#'
#' `summary()`, `format()` and `print()` give Keras' layer table: each
#' layer's name and class, output shape and number of parameters, then the
#' totals.
#'
#' @param object,x A Keras model.
#' @param line_length Total width of the table, in characters.
#' @param positions Relative or absolute positions of the column borders.
#' @param expand_nested Whether to expand nested models.
#' @param show_trainable Whether to show if a layer is trainable; `NA` shows
#'   it when the model has non-trainable weights.
#' @param ... For `summary()` and `print()`: passed on to `format()`.
#' @returns `format()`: a string. `summary()` and `print()`: the model,
#'   invisibly.
#' @name summary.keras.src.models.model.Model
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(2)
#' summary(model)
NULL

#' @rdname summary.keras.src.models.model.Model
summary.keras.src.models.model.Model <- function(object, ...) {
  writeLines(format(object, ...))
  invisible(object)
}

#' @rdname summary.keras.src.models.model.Model
format.keras.src.models.model.Model <- function(x,
                                                line_length = min(getOption("width"), 180L),
                                                positions = NULL,
                                                expand_nested = FALSE,
                                                show_trainable = NA, ...) {
  if (is.na(show_trainable)) {
    show_trainable <- isTRUE(tryCatch(
      x$built && length(x$non_trainable_weights) > 0L,
      error = function(e) FALSE
    ))
  }
  text <- with_py_errors(py_rapi()$summary_text(
    x, line_length = as.integer(line_length), positions = positions,
    expand_nested = expand_nested, show_trainable = show_trainable
  ))
  sub("\n+$", "", text)
}

#' @rdname summary.keras.src.models.model.Model
print.keras.src.models.model.Model <- function(x, ...) {
  writeLines(format(x, ...))
  invisible(x)
}

#' Plot a model's graph
#'
#' Draws the layers of a model and their connections with Keras'
#' `keras.utils.plot_model()`, which needs the Python package pydot and the
#' Graphviz program `dot` (installed by `make setup`; by hand,
#' `pip install pydot` and `apt-get install graphviz`). Without them the
#' error has class `kerasbackup_plot_unavailable`.
#'
#' @param x A built Keras model.
#' @param show_shapes,show_dtype,show_layer_names,show_layer_activations,show_trainable
#'   What to show on each layer's box.
#' @param ... Unused.
#' @param rankdir `"TB"` (top to bottom) or `"LR"` (left to right).
#' @param expand_nested Whether to expand nested models.
#' @param dpi Resolution of the image.
#' @param to_file Where to write the image (its extension gives the
#'   format). Without it a temporary PNG is drawn on the current graphics
#'   device.
#' @returns The image file path, invisibly.
#' @examplesIf kerasbackup:::python_ready() && nzchar(Sys.which("dot"))
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(2)
#' plot(model, to_file = tempfile(fileext = ".png"))
plot.keras.src.models.model.Model <- function(x, show_shapes = FALSE,
                                              show_dtype = FALSE,
                                              show_layer_names = FALSE, ...,
                                              rankdir = "TB",
                                              expand_nested = FALSE,
                                              dpi = getOption("keras.plot.model.dpi", 200L),
                                              show_layer_activations = FALSE,
                                              show_trainable = FALSE,
                                              to_file = NULL) {
  rlang::check_dots_empty()
  check_plot_model_tools()
  draw <- is.null(to_file)
  file <- if (draw) tempfile("keras_model_", fileext = ".png") else to_file
  if (draw) on.exit(unlink(file), add = TRUE)
  with_py_errors(py_keras()$utils$plot_model(
    x, to_file = file, show_shapes = show_shapes, show_dtype = show_dtype,
    show_layer_names = show_layer_names, rankdir = rankdir,
    expand_nested = expand_nested, dpi = as.integer(dpi),
    show_layer_activations = show_layer_activations,
    show_trainable = show_trainable
  ))
  if (draw) draw_png(file)
  invisible(if (draw) NULL else file)
}

check_plot_model_tools <- function(call = rlang::caller_env()) {
  missing <- c(
    if (!reticulate::py_module_available("pydot")) "the Python package pydot",
    if (!nzchar(Sys.which("dot"))) "the Graphviz program {.code dot}"
  )
  if (length(missing)) {
    cli::cli_abort(
      c(paste("{.fn plot} of a model needs", paste(missing, collapse = " and "),
              "."),
        i = "Install them with {.code make setup}, or by hand with
             {.code pip install pydot} and {.code apt-get install graphviz}."),
      class = c("kerasbackup_plot_unavailable", "kerasbackup_error"),
      call = call
    )
  }
}

draw_png <- function(file) {
  if (!requireNamespace("png", quietly = TRUE)) {
    cli::cli_inform("Install the R package {.pkg png} to draw the model;
                     use {.arg to_file} to keep the image.")
    return(invisible())
  }
  img <- png::readPNG(file)
  graphics::plot.new()
  old <- graphics::par(mar = c(0, 0, 0, 0))
  on.exit(graphics::par(old))
  graphics::plot.window(c(0, dim(img)[2]), c(0, dim(img)[1]), asp = 1)
  graphics::rasterImage(img, 0, 0, dim(img)[2], dim(img)[1])
  invisible()
}

#' Get a layer of a model
#'
#' @param object A Keras model.
#' @param name The layer's name.
#' @param index The layer's position, 1-based.
#' @returns The layer.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>%
#'   layer_dense(2, name = "hidden")
#' get_layer(model, "hidden")
#' get_layer(model, index = 1)
get_layer <- function(object, name = NULL, index = NULL) {
  if (is.null(name) == is.null(index)) {
    cli::cli_abort("Give exactly one of {.arg name} and {.arg index}.",
                   class = c("kerasbackup_invalid_argument", "kerasbackup_error"))
  }
  if (!is.null(name) && !is_string(name)) {
    abort_invalid_arg("name", name, "a layer name (a string)")
  }
  if (!is.null(index)) {
    if (!is_whole_number(index)) {
      abort_invalid_arg("index", index, "a whole number >= 1")
    }
    index <- as.integer(index) - 1L
  }
  with_py_errors(object$get_layer(name = name, index = index))
}

#' Remove the last layer of a Sequential model
#'
#' @param object A Sequential model.
#' @param rebuild Whether to rebuild the model after removing the layer.
#' @returns The model, invisibly (it is modified in place).
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>%
#'   layer_dense(2) %>% layer_dense(1)
#' pop_layer(model)
#' length(model$layers)
pop_layer <- function(object, rebuild = TRUE) {
  if (!inherits(object, "keras.src.models.sequential.Sequential")) {
    abort_invalid_arg("object", object, "a Sequential model")
  }
  with_py_errors(py_rapi()$pop_layer(object, rebuild = rebuild))
  invisible(object)
}

#' Freeze and unfreeze weights
#'
#' A frozen layer's weights are not updated by training. Called with the
#' model alone, every layer is frozen (or unfrozen). `from` and `to` limit
#' it to a range of layers (given by name, 1-based position or the layer
#' itself; a negative position counts from the end), both ends included;
#' the others become trainable. `which` picks
#' layers by name, position, a logical vector, or a function of the layer
#' returning `TRUE` or `FALSE`. Compile the model again after changing what
#' is trainable.
#'
#' @param object A Keras model or layer.
#' @param from,to First and last layer of the range.
#' @param which The layers to change.
#' @returns The object, invisibly (it is modified in place).
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>%
#'   layer_dense(3) %>% layer_dense(2) %>% layer_dense(1)
#' freeze_weights(model, to = 2)
#' sapply(model$layers, function(l) l$trainable)
#' unfreeze_weights(model)
freeze_weights <- function(object, from = NULL, to = NULL, which = NULL) {
  set_trainable(object, from, to, which, trainable = FALSE)
}

#' @rdname freeze_weights
#' @export
unfreeze_weights <- function(object, from = NULL, to = NULL, which = NULL) {
  set_trainable(object, from, to, which, trainable = TRUE)
}

set_trainable <- function(object, from, to, which, trainable,
                          call = rlang::caller_env()) {
  if (!is.null(which) && !(is.null(from) && is.null(to))) {
    cli::cli_abort("Give {.arg which} or {.arg from}/{.arg to}, not both.",
                   class = c("kerasbackup_invalid_argument", "kerasbackup_error"),
                   call = call)
  }
  if (is.null(which) && is.null(from) && is.null(to)) {
    object$trainable <- trainable
    return(invisible(object))
  }
  object$trainable <- TRUE
  layers <- object$layers
  n <- length(layers)
  names <- vapply(layers, function(l) l$name, "")
  selected <- if (!is.null(which)) {
    if (is.function(which)) {
      vapply(layers, function(l) isTRUE(which(l)), TRUE)
    } else if (is.logical(which) && length(which) == n) {
      which
    } else {
      seq_len(n) %in% vapply(as.list(which), layer_position, 1L,
                             names = names, arg = "which", call = call)
    }
  } else {
    first <- if (is.null(from)) 1L else layer_position(from, names, "from", call)
    last <- if (is.null(to)) n else layer_position(to, names, "to", call)
    seq_len(n) %in% seq.int(first, last)
  }
  for (i in seq_len(n)) {
    layers[[i]]$trainable <- if (selected[[i]]) trainable else !trainable
  }
  invisible(object)
}

layer_position <- function(x, names, arg, call) {
  if (inherits(x, "keras.src.layers.layer.Layer")) x <- x$name
  pos <- if (is.character(x) && length(x) == 1L) {
    match(x, names)
  } else if (is_whole_number(x) && x <= length(names)) {
    as.integer(x)
  } else if (is_whole_number(-x) && -x <= length(names)) {
    length(names) + 1L + as.integer(x)  # -1 is the last layer
  } else {
    NA_integer_
  }
  if (is.na(pos)) {
    abort_invalid_arg(arg, x, sprintf(
      "a layer of the model: a name, a position in 1..%d (negative from the end), or a layer",
      length(names)), call = call)
  }
  pos
}

#' Train, test or predict on one batch
#'
#' One gradient update (`train_on_batch()`), one evaluation
#' (`test_on_batch()`) or one prediction (`predict_on_batch()`) on a single
#' batch of data.
#'
#' @param object A Keras model (compiled for training and testing).
#' @param x Input data: an R array, or a list of them for several inputs.
#' @param y Target data.
#' @param sample_weight Optional per-sample weights.
#' @param class_weight Optional named list of weights per class index.
#' @returns `train_on_batch()` and `test_on_batch()`: a named list of the
#'   loss and metrics. `predict_on_batch()`: an R array (or a list of them).
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' model %>% compile(optimizer = "sgd", loss = "mse")
#' x <- matrix(runif(32), ncol = 4)
#' train_on_batch(model, x, rowSums(x))
#' test_on_batch(model, x, rowSums(x))
#' predict_on_batch(model, x)
train_on_batch <- function(object, x, y = NULL, sample_weight = NULL,
                           class_weight = NULL) {
  out <- with_py_errors(object$train_on_batch(
    x = as_py_data(x), y = as_py_data(y),
    sample_weight = as_py_data(sample_weight),
    class_weight = as_class_weight(class_weight), return_dict = TRUE
  ))
  as_metric_list(out)
}

#' @rdname train_on_batch
#' @export
test_on_batch <- function(object, x, y = NULL, sample_weight = NULL) {
  out <- with_py_errors(object$test_on_batch(
    x = as_py_data(x), y = as_py_data(y),
    sample_weight = as_py_data(sample_weight), return_dict = TRUE
  ))
  as_metric_list(out)
}

#' @rdname train_on_batch
#' @export
predict_on_batch <- function(object, x) {
  with_py_errors(object$predict_on_batch(as_py_data(x)))
}

# A dict of Python/NumPy scalars as a named list of R numbers.
as_metric_list <- function(logs) {
  logs <- py_value(logs)
  lapply(logs, function(v) as.numeric(if (is_tensor_like(v)) as.array(v) else v))
}
