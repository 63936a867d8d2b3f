#' Tensors of ones or zeros
#'
#' @param shape Integer vector, the shape of the tensor (doubles are
#'   converted to integers).
#' @param dtype Optional dtype name, e.g. `"float32"`.
#' @returns A tensor.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' op_ones(c(2, 3))
#' op_zeros(5)
op_ones <- function(shape, dtype = NULL) {
  with_py_errors(py_keras()$ops$ones(as_shape(shape), dtype = dtype))
}

#' @rdname op_ones
#' @export
op_zeros <- function(shape, dtype = NULL) {
  with_py_errors(py_keras()$ops$zeros(as_shape(shape), dtype = dtype))
}
