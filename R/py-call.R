# Calls to Python functions and methods from R accept a trailing comma, as
# keras3 code writes them (`self$add_weight(shape = s, trainable = TRUE, )`):
# reticulate 1.28's call wrapper stops at the empty argument.

#' @importFrom reticulate py_to_r_wrapper
#' @method py_to_r_wrapper python.builtin.method
#' @export
py_to_r_wrapper.python.builtin.method <- function(x) {
  call_python <- NextMethod()
  function(...) do.call(call_python, rlang::list2(...))
}

#' @method py_to_r_wrapper python.builtin.function
#' @export
py_to_r_wrapper.python.builtin.function <- py_to_r_wrapper.python.builtin.method
