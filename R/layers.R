# Core layers. Each adds itself to a Sequential model given as `object`, so
# they compose with both `%>%` and `|>`.

create_layer <- function(layer_name, object, args) {
  args <- args[!vapply(args, is.null, TRUE)]
  if (!is.null(args$input_shape)) {
    args$input_shape <- as_shape(args$input_shape)
  }
  layer <- with_py_errors(do.call(py_keras()$layers[[layer_name]], args))
  if (missing(object) || is.null(object)) {
    return(layer)
  }
  with_py_errors(object$add(layer))
  invisible(object)
}

#' Densely connected layer
#'
#' @param object A Sequential model to add the layer to, or missing to
#'   return the layer itself.
#' @param units Positive integer, dimensionality of the output space.
#' @param activation Name of the activation function, or `NULL` for none.
#' @param use_bias Whether the layer uses a bias vector.
#' @param kernel_initializer,bias_initializer Initializer names or objects.
#' @param input_shape Optional shape of one input sample.
#' @param name Optional layer name.
#' @param ... More arguments to `keras.layers.Dense`.
#' @returns The model with the layer added (invisibly), or the layer.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential() %>% layer_dense(10, activation = "relu")
layer_dense <- function(object, units, activation = NULL, use_bias = TRUE,
                        kernel_initializer = "glorot_uniform",
                        bias_initializer = "zeros", input_shape = NULL,
                        name = NULL, ...) {
  if (!is_whole_number(units)) {
    abort_invalid_arg("units", units, "a positive whole number")
  }
  create_layer("Dense", if (missing(object)) NULL else object, list(
    units = as.integer(units), activation = activation, use_bias = use_bias,
    kernel_initializer = kernel_initializer,
    bias_initializer = bias_initializer, input_shape = input_shape,
    name = name, ...
  ))
}

#' Dropout layer
#'
#' @inheritParams layer_dense
#' @param rate Fraction of the inputs to drop, in `[0, 1)`.
#' @param noise_shape Optional shape of the binary dropout mask.
#' @param seed Optional integer seed of the layer's random generator.
#' @returns The model with the layer added (invisibly), or the layer.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential() %>% layer_dense(10) %>% layer_dropout(0.5)
layer_dropout <- function(object, rate, noise_shape = NULL, seed = NULL,
                          name = NULL, ...) {
  if (!(is.numeric(rate) && length(rate) == 1 && !is.na(rate) &&
        rate >= 0 && rate < 1)) {
    abort_invalid_arg("rate", rate, "a number in [0, 1)")
  }
  create_layer("Dropout", if (missing(object)) NULL else object, list(
    rate = rate,
    noise_shape = if (!is.null(noise_shape)) as_shape(noise_shape),
    seed = as_int_or_null(seed), name = name, ...
  ))
}
