# Calls to Python functions, methods and classes from R accept a trailing
# comma and `!!!` splicing, as keras3 code writes them
# (`self$add_weight(shape = s, trainable = TRUE, )`, `cls(!!!config)` in a
# from_config() method): reticulate 1.28's call wrapper stops at the empty
# argument and evaluates `!!!x` as a triple negation.

py_to_r_wrapper.python.builtin.method <- function(x) {
  call_python <- NextMethod()
  function(...) do.call(call_python, rlang::list2(...))
}

py_to_r_wrapper.python.builtin.function <- py_to_r_wrapper.python.builtin.method

py_to_r_wrapper.python.builtin.type <- py_to_r_wrapper.python.builtin.method
