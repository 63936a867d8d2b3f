# Converting R arguments to what Keras expects. The generated wrappers (and
# hand-written ones) capture the arguments the caller gave, pass each through
# a converter chosen for its name and Python type, and call Keras.

# ---------------------------------------------------------------- capture

#' Arguments the caller of a wrapper actually gave
#'
#' Called from the body of a wrapper: returns a named list of the formals
#' the caller supplied (defaults are left to Keras), followed by the
#' arguments in `...`. Missing arguments and trailing commas drop out, so
#' `layer_dense(, 10, )` captures `list(units = 10)`. Unnamed arguments in
#' `...` keep an empty name; [py_call_args()] passes them positionally.
#'
#' @param converters Named list of functions `f(value, arg)` applied to the
#'   captured arguments of those names (`NULL` results are kept).
#' @param ignore Names of formals not to capture (e.g. `"object"`).
#' @param rename Named character vector: R formal = Python argument name,
#'   for arguments keras3 spells differently (`f` for Lambda's `function`).
#' @param envir,fn The wrapper's frame and function; the defaults are right
#'   when `capture_args()` is called in the wrapper's body (directly or as an
#'   argument of another call).
#' @noRd
capture_args <- function(converters = list(), ignore = character(),
                         rename = character(), envir = parent.frame(),
                         fn = sys.function(sys.parent())) {
  formal_names <- as.character(names(formals(fn)))
  wanted <- setdiff(formal_names, c("...", ignore))
  given <- wanted[!vapply(wanted, function(name) {
    eval(call("missing", as.name(name)), envir)
  }, TRUE)]
  args <- mget(given, envir = envir)
  if ("..." %in% formal_names && !"..." %in% ignore) {
    dots <- eval(quote(rlang::list2(...)), envir)
    if (length(dots)) {
      if (is.null(names(dots))) names(dots) <- rep("", length(dots))
      dots <- dots[!names(dots) %in% ignore]
      args <- c(args, dots)
    }
  }
  args <- convert_args(args, converters)
  hit <- match(names(args), names(rename))
  names(args)[!is.na(hit)] <- rename[hit[!is.na(hit)]]
  args
}

convert_args <- function(args, converters) {
  for (name in intersect(names(args), names(converters))) {
    args[name] <- list(converters[[name]](args[[name]], name))
  }
  args
}

#' Call a Python callable with captured arguments
#'
#' Unnamed arguments and those named in `positional` go positionally (in
#' that order: `positional` first), the rest by keyword. R functions among
#' the values become Python callables.
#' @noRd
py_call_args <- function(callable, args, positional = character()) {
  args <- lapply(args, as_callable_arg)
  nms <- names(args) %||% rep("", length(args))
  named_pos <- intersect(positional, nms)
  pos <- c(unname(args[named_pos]), unname(args[!nzchar(nms)]))
  kw <- args[nzchar(nms) & !nms %in% named_pos]
  with_py_errors(do.call(callable, c(pos, kw)))
}

# ---------------------------------------------------------------- numbers

#' Whole numbers to integers
#'
#' `as_integer()` converts doubles that are whole numbers to integers and
#' stops with a classed error (naming the argument) for any other number and
#' for `NA` of any type (a logical `NA` would reach Python as `True`).
#' `NULL`, lists, strings, logicals and Python objects (tensors) pass
#' unchanged. `as_integer_if_whole()` is the lenient form used where Keras'
#' default is an int but a fraction is also meaningful.
#' @noRd
as_integer <- function(x, arg = "x") {
  if (is.atomic(x) && anyNA(x)) {
    abort_invalid_arg(arg, x, if (length(x) == 1L) "a whole number"
                              else "whole numbers")
  }
  if (!is.numeric(x) || is.integer(x)) return(x)
  if (!length(x) || !all(is_whole(x))) {
    abort_invalid_arg(arg, x, if (length(x) == 1L) "a whole number"
                              else "whole numbers")
  }
  as_int_keep_dim(x)
}

as_integer_if_whole <- function(x, arg = "x") {
  if (is.double(x) && length(x) && all(is_whole(x))) as_int_keep_dim(x) else x
}

#' An int or a tuple of ints (kernel sizes, strides, pool sizes)
#' @noRd
as_integer_tuple <- function(x, arg = "x") {
  if (is.null(x) || is_py_object(x)) return(x)
  if (is.list(x)) x <- unlist(x)
  x <- as_integer(x, arg)
  if (length(x) == 1L) x else reticulate::tuple(as.list(x))
}

is_whole <- function(x) {
  !is.na(x) & is.finite(x) & x == trunc(x) & abs(x) <= .Machine$integer.max
}

as_int_keep_dim <- function(x) {
  d <- dim(x)
  x <- as.integer(x)
  if (!is.null(d)) dim(x) <- d
  x
}

# ---------------------------------------------------------------- axes

#' 1-based R axes to 0-based Keras axes
#'
#' Positive axes are shifted down by one; negative axes count from the end
#' and stay as they are (-1 is the last axis in both). 0 is an error.
#' Several axes become a Python list.
#' @noRd
as_axis <- function(x, arg = "axis") {
  if (is.null(x) || is_py_object(x)) return(x)
  if (is.list(x)) return(lapply(x, as_axis, arg = arg))
  given <- x
  x <- as_integer(x, arg)
  if (!is.numeric(x)) return(x)
  if (any(x == 0L)) {
    abort_invalid_arg(arg, given, "a 1-based axis (1 is the first axis, -1 the last), not 0")
  }
  x <- ifelse(x > 0L, x - 1L, x)
  if (length(x) == 1L) x else as.list(x)
}

#' tensordot's `axes`: a count of axes (a single number) or 1-based axis lists
#' @noRd
as_tensordot_axes <- function(x, arg = "axes") {
  if (is.numeric(x) && length(x) == 1L) as_integer(x, arg) else as_axis(x, arg)
}

# ---------------------------------------------------------------- shapes

#' Shapes to Python tuples
#'
#' Accepts numbers, lists (`NULL`/`NA` entries are unknown dimensions),
#' [shape()] objects, Python tuples/lists/`TensorShape`s and tensors'
#' dimensions. A `NULL` shape stays `NULL` (Python `None`).
#' @noRd
as_shape <- function(x, arg = "shape") {
  if (is.null(x) || is.function(x)) return(x)
  if (is_py_object(x) && !inherits(x, "tensorflow.python.framework.tensor_shape.TensorShape")) {
    return(x)
  }
  reticulate::tuple(unclass(shape_dims(x, arg)))
}

# ---------------------------------------------------------------- data

#' R data (vectors, arrays) to NumPy arrays; Python objects pass unchanged
#' @noRd
as_py_array <- function(x, arg = "x") {
  if (is.null(x) || is_py_object(x)) return(x)
  if (is.list(x)) return(lapply(x, as_py_array))
  as_py_data(x)
}

#' R vectors and arrays given to ops become NumPy arrays (doubles in
#' [config_floatx()], as tensors would be); single numbers stay Python
#' scalars, which Keras types weakly. Used for the arguments of `op_*`,
#' `activation_*` and `random_*` wrappers that have no converter of their own.
#' @noRd
as_tensor_input <- function(x, arg = "x") {
  if (!(is.numeric(x) || is.logical(x)) || (length(x) == 1L && is.null(dim(x)))) {
    return(x)
  }
  if (is.null(dim(x))) x <- array(x)
  dtype <- if (is.double(x)) config_floatx() else if (is.integer(x)) "int32"
  as_numpy(x, dtype = dtype)
}

#' R data to a NumPy array, starting Python first
#'
#' reticulate 1.28's `np_array()` crashes R (a segfault) when Python has not
#' started yet, so every conversion in the package goes through here.
#' @noRd
as_numpy <- function(x, dtype = NULL) {
  py_kb()
  reticulate::np_array(x, dtype = dtype)
}

tensor_input_paths <- c("ops.", "activations.", "random.")

convert_tensor_inputs <- function(path, args, converters) {
  if (!any(startsWith(path, tensor_input_paths))) return(args)
  plain <- !names(args) %in% names(converters)
  args[plain] <- lapply(args[plain], as_tensor_input)
  args
}

# ---------------------------------------------------------------- callables

#' R functions to Python callables
#'
#' A package wrapper (such as `activation_relu` or `loss_huber`) becomes the
#' Python object it wraps; any other R function becomes a Python function
#' with the R function's argument names as its signature, named after its
#' `"name"` attribute. Lists are converted element-wise; everything else
#' passes unchanged.
#' @noRd
as_callable <- function(x, arg = "x", default_name = "r_function") {
  if (is.list(x) && !is.data.frame(x) && !is_py_object(x)) {
    return(lapply(x, as_callable, arg = arg, default_name = default_name))
  }
  if (!is.function(x) || is_py_object(x)) return(x)
  target <- wrapped_py_object(x)
  if (!is.null(target)) return(target)
  fmls <- names(formals(x))
  name <- attr(x, "py_function_name", exact = TRUE) %||%
    attr(x, "name", exact = TRUE) %||% default_name
  py_rfunctions()$as_callable(
    reticulate::r_to_py(x, convert = TRUE),
    arg_names = as.list(setdiff(fmls, "...")),
    has_dots = "..." %in% fmls,
    name = name
  )
}

as_callable_arg <- function(x) {
  if (is.function(x) && !is_py_object(x)) return(as_callable(x))
  if (is.list(x) && !is_py_object(x) && length(x) &&
      any(vapply(x, function(v) is.function(v) && !is_py_object(v), TRUE))) {
    return(as_callable(x))
  }
  x
}

# The Python object behind one of this package's generated wrappers: their
# bodies are a call to a wrapper helper whose first argument is its path in
# `keras` (the function form for losses and metrics).
wrapped_py_object <- function(fn) {
  if (!identical(environment(fn), topenv(environment(as_callable)))) {
    return(NULL)
  }
  body <- body(fn)
  if (is.call(body) && identical(body[[1L]], as.name("{")) && length(body) == 2L) {
    body <- body[[2L]]
  }
  if (!is.call(body) || !is.name(body[[1L]])) return(NULL)
  helper <- as.character(body[[1L]])
  if (!helper %in% names(wrapper_paths)) return(NULL)
  path <- body[[wrapper_paths[[helper]]]]
  if (!is.character(path)) return(NULL)
  keras_object(path)
}

# Which argument of each wrapper helper holds the Python path to resolve.
wrapper_paths <- c(keras_call = 2L, keras_layer = 2L, keras_merge_layer = 2L,
                   keras_loss = 3L, keras_application = 2L)

py_rfunctions <- function() {
  if (is.null(.py$rfunctions)) {
    py_kb()
    .py$rfunctions <- reticulate::import("kerasbackup.rfunctions")
  }
  .py$rfunctions
}

# ---------------------------------------------------------------- misc

#' A Keras object by its dotted path below `keras` (e.g. `"layers.Dense"`)
#' @noRd
keras_object <- function(path) {
  obj <- py_keras()
  for (part in strsplit(path, ".", fixed = TRUE)[[1L]]) {
    obj <- obj[[part]]
  }
  obj
}

is_py_object <- function(x) inherits(x, "python.builtin.object")

#' File paths: `~` expanded; anything else passes unchanged
#' @noRd
as_path <- function(x, arg = "path") {
  if (is.character(x) && length(x) == 1L && !is.na(x)) path.expand(x) else x
}

#' A dropout rate, checked in R: a number in [0, 1)
#' @noRd
as_dropout_rate <- function(x, arg = "rate") {
  if (!(is.numeric(x) && length(x) == 1L && !is.na(x) && x >= 0 && x < 1)) {
    abort_invalid_arg(arg, x, "a number in [0, 1)")
  }
  x
}

#' Sequences for pad_sequences(): each R vector becomes a Python list (a
#' length-one vector would otherwise become a scalar)
#' @noRd
as_sequences <- function(x, arg = "sequences") {
  if (!is.list(x) || is_py_object(x)) return(x)
  lapply(x, function(s) {
    if (is_py_object(s)) s else as.list(as_integer_if_whole(as.vector(s)))
  })
}

#' An R callback hook `function(index, logs)` seeing 1-based epochs/batches
#' @noRd
as_index_logs_callback <- function(x, arg = "x") {
  if (!is.function(x) || is_py_object(x)) return(x)
  py_rfunctions()$one_based_index(as_callable(x, arg, default_name = arg))
}

#' 1-based R indices to 0-based Keras indices (negative ones stay)
#' @noRd
as_py_index <- function(x, arg = "indices", zero = c("error", "pass")) {
  zero <- match.arg(zero)
  if (is.null(x)) return(x)
  if (is_py_object(x)) {
    ops <- keras_object("ops")
    return(with_py_errors(ops$where(ops$greater(x, 0L), ops$subtract(x, 1L), x)))
  }
  if (is.list(x)) return(lapply(x, as_py_index, arg = arg, zero = zero))
  if (is.factor(x)) x <- as.integer(x)
  x <- as_integer(x, arg)
  if (zero == "error" && any(x == 0L, na.rm = TRUE)) {
    abort_invalid_arg(arg, x, "1-based indices (or set `zero_indexed = TRUE`)")
  }
  x[x > 0L] <- x[x > 0L] - 1L
  if (length(x) > 1L || !is.null(dim(x))) as_py_data(x) else x
}
