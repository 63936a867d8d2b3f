# Model creation: inputs, functional models and sequential models.

#' Create an input to a functional model
#'
#' Makes a symbolic tensor: the input of a model built with [keras_model()].
#' Layers called on it return symbolic tensors too.
#'
#' @param shape The shape of one sample, without the batch dimension: a
#'   vector or list of whole numbers, with `NA` or `NULL` for an unknown
#'   size, e.g. `c(NA, 32)`. Use `shape = list()` for scalar samples.
#' @param batch_size Optional whole number, a fixed batch size.
#' @param dtype The data type, e.g. `"float32"` (the default) or `"int32"`.
#' @param sparse Whether the input is sparse.
#' @param ragged Whether the input is ragged (TensorFlow only).
#' @param batch_shape Instead of `shape` and `batch_size`: the whole shape,
#'   batch dimension first.
#' @param name Optional name of the input. Named inputs can be fed by a
#'   named list of data.
#' @param tensor Optional existing tensor to wrap.
#' @param optional Whether the input may be given as `NULL`.
#' @returns A symbolic tensor.
#' @family functional API
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' input <- keras_input(shape = c(28, 28, 1), name = "image")
#' input$shape
keras_input <- function(shape = NULL, batch_size = NULL, dtype = NULL,
                        sparse = NULL, ragged = NULL, batch_shape = NULL,
                        name = NULL, tensor = NULL, optional = FALSE) {
  args <- input_args(shape, batch_size, dtype, sparse, ragged, batch_shape,
                     name, optional)
  args$tensor <- tensor
  with_py_errors(do.call(py_keras()$Input, args))
}

#' @rdname keras_input
#' @export
layer_input <- keras_input

# Checked and converted arguments shared by keras_input() and the input of
# keras_model_sequential(); `prefix` names them as the caller spells them.
input_args <- function(shape, batch_size, dtype, sparse, ragged, batch_shape,
                       name, optional, prefix = "", call = rlang::caller_env()) {
  arg <- function(x) paste0(prefix, x)
  if (!is.null(batch_size) && !is_whole_number(batch_size)) {
    abort_invalid_arg(arg("batch_size"), batch_size, "a positive whole number",
                      call = call)
  }
  for (flag in c("sparse", "ragged")) {
    value <- get(flag)
    if (!is.null(value) && !is_flag(value)) {
      abort_invalid_arg(arg(flag), value, "TRUE, FALSE or NULL", call = call)
    }
  }
  if (!is_flag(optional)) {
    abort_invalid_arg(arg("optional"), optional, "TRUE or FALSE", call = call)
  }
  for (string in c("dtype", "name")) {
    value <- get(string)
    if (!is.null(value) && !is_string(value)) {
      abort_invalid_arg(arg(string), value, "a non-empty string or NULL",
                        call = call)
    }
  }
  args <- list(
    shape = as_shape(shape, arg("shape")),
    batch_size = if (!is.null(batch_size)) as.integer(batch_size),
    dtype = dtype, sparse = sparse, ragged = ragged,
    batch_shape = as_shape(batch_shape, arg("batch_shape")),
    name = name
  )
  args <- args[!vapply(args, is.null, TRUE)]
  if (isTRUE(optional)) args$optional <- TRUE
  args
}

#' Create a functional model
#'
#' A model from its inputs (made by [keras_input()]) and its outputs (made
#' by calling layers on the inputs). Several inputs or outputs are given as
#' a list; a named list makes them addressable by name (in `fit()` data and
#' in `compile()`'s `loss` and `metrics`).
#'
#' @param inputs An input tensor, or a list (optionally named) of them.
#' @param outputs An output tensor, or a list (optionally named) of them.
#' @param ... More arguments to `keras.Model`, such as `name`.
#' @returns A Keras functional model.
#' @family functional API
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' input <- keras_input(shape = 4)
#' output <- input %>% layer_dense(2)
#' model <- keras_model(input, output)
keras_model <- function(inputs = NULL, outputs = NULL, ...) {
  with_py_errors(do.call(py_keras()$Model, c(
    list(inputs = unwrap_single(inputs), outputs = unwrap_single(outputs)),
    rlang::list2(...)  # list2() allows a trailing comma, as keras3 does
  )))
}

# A one-element unnamed list stands for its element, as in Keras.
unwrap_single <- function(x) {
  if (is.list(x) && !inherits(x, "python.builtin.object") &&
      is.null(names(x)) && length(x) == 1L) {
    return(x[[1L]])
  }
  x
}

#' Create a sequential model
#'
#' @param input_shape Optional shape of one sample (without the batch
#'   dimension), e.g. `c(20)`. Without it (and the other `input_*`
#'   arguments) the model is built on first use.
#' @param name Optional name of the model.
#' @param ... Layers to add, in order (unnamed), and more named arguments
#'   to the model's `InputLayer`.
#' @param input_dtype,input_batch_size,input_sparse,input_ragged,input_batch_shape,input_name,input_tensor,input_optional
#'   The model's input, as the arguments of [keras_input()]: its dtype,
#'   batch size, sparseness, raggedness, whole shape, name, tensor and
#'   whether it is optional.
#' @param trainable Whether the model's weights are trained.
#' @param layers A list of layers to add.
#' @returns A Keras `Sequential` model.
#' @family functional API
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 20, input_name = "features") %>%
#'   layer_dense(10)
keras_model_sequential <- function(input_shape = NULL, name = NULL, ...,
                                   input_dtype = NULL, input_batch_size = NULL,
                                   input_sparse = NULL, input_ragged = NULL,
                                   input_batch_shape = NULL, input_name = NULL,
                                   input_tensor = NULL, input_optional = FALSE,
                                   trainable = TRUE, layers = list()) {
  keras <- py_keras()
  dots <- rlang::list2(...)
  named <- if (is.null(names(dots))) rep(FALSE, length(dots)) else nzchar(names(dots))
  if (!is.null(name) && !is_string(name)) {
    abort_invalid_arg("name", name, "a non-empty string or NULL")
  }
  if (!is_flag(trainable)) abort_invalid_arg("trainable", trainable, "TRUE or FALSE")
  layers <- c(unname(dots[!named]), as.list(layers))
  input <- c(
    input_args(input_shape, input_batch_size, input_dtype, input_sparse,
               input_ragged, input_batch_shape, input_name, input_optional,
               prefix = "input_"),
    dots[named]
  )
  if (!is.null(input_tensor)) input$input_tensor <- input_tensor
  if (length(input)) {
    layers <- c(list(with_py_errors(do.call(keras$layers$InputLayer, input))),
                layers)
  }
  with_py_errors(keras$Sequential(layers = layers, name = name,
                                  trainable = trainable))
}
