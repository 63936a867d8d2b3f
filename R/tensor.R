# Tensors and variables in R: conversions, dim(), length(), the Ops, Math
# and Summary group generics and 1-based `[`.
#
# One set of functions serves every tensor-like class: TensorFlow tensors
# and variables (all `tensorflow.python.types.core.Tensor`), Keras'
# symbolic `KerasTensor` and Keras variables of any backend. They are
# registered for each class (R/s3-register.R), so that an operation between
# two of them finds the same method on both sides.

#' Tensors and variables as R objects
#'
#' Tensors (TensorFlow's, Keras' symbolic `KerasTensor`s) and Keras
#' variables work with R's conversion functions, operators and indexing:
#'
#' * `as.array()`, `as.numeric()`, `as.double()`, `as.integer()`,
#'   `as.logical()` and `as.vector()` copy the value into R (a symbolic
#'   tensor has no value and gives an error).
#' * `dim()` is the shape, with `NA` for an unknown dimension; `length()` is
#'   the number of elements.
#' * Arithmetic (`+ - * / ^ %% %/%`), comparison (`== != < <= > >=`) and
#'   logical (`& | !`) operators, the `Math` functions (`abs()`, `sqrt()`,
#'   `exp()`, `log()`, `round()`, `cumsum()`, ...) and the `Summary` ones
#'   (`sum()`, `prod()`, `max()`, `min()`, `range()`, `any()`, `all()`), and
#'   `mean()`, run as Keras operations and return tensors. An R number
#'   operand takes the tensor's precision.
#' * `x[i, j, ...]` indexes with 1-based positions, as keras3 does:
#'   positive numbers count from the start, negative ones from the end
#'   (`-1` is the last element); a missing argument takes the whole axis;
#'   a range `a:b` is a slice including both ends, with `NA` for an open end
#'   (`x[, NA:-2]`); a vector of positions or a logical vector selects along
#'   that axis; `NULL` or `newaxis` adds an axis; `..` or `all_dims()`
#'   stands for all the axes not named. A single index drops its axis unless
#'   `drop = FALSE`. `x[...] <- value` returns a new tensor with those
#'   positions replaced.
#'
#' @returns `as.*()`: R vectors or arrays. `dim()`: an integer vector.
#'   `length()`: a number. Operators, `Math`, `Summary` and `[`: tensors.
#' @name tensor-methods
#' @aliases newaxis
#' @examplesIf kerasbackup:::python_ready()
#' x <- op_ones(c(2, 3))
#' dim(x)
#' as.array(x * 2 + 1)
#' sum(x)
#' x[1, ]
#' x[, 2:3]
#' x[, -1]
NULL

#' @rdname tensor-methods
#' @export
newaxis <- NULL

#' @rdname tensor-methods
#' @returns `all_dims()`: Python's `Ellipsis`, which stands for all the axes
#'   not otherwise indexed.
#' @export
all_dims <- function() reticulate::import_builtins()$Ellipsis

tensor_as_array <- function(x, ...) {
  value <- with_py_errors(py_keras()$ops$convert_to_numpy(x))
  value <- py_value(value)
  if (is.null(dim(value))) dim(value) <- length(value)
  value
}

tensor_as_double <- function(x, ...) as.double(tensor_as_array(x))
tensor_as_integer <- function(x, ...) as.integer(tensor_as_array(x))
tensor_as_logical <- function(x, ...) as.logical(tensor_as_array(x))
tensor_as_vector <- function(x, mode = "any") {
  as.vector(tensor_as_array(x), mode = mode)
}

tensor_dim <- function(x) {
  shape <- py_rapi()$shape_list(x)
  vapply(shape, function(d) if (is.null(d)) NA_integer_ else as.integer(d), 1L)
}

tensor_length <- function(x) {
  d <- tensor_dim(x)
  if (anyNA(d)) return(NA_integer_)
  n <- prod(d)
  if (n <= .Machine$integer.max) as.integer(n) else n
}

tensor_dtype <- function(x) {
  py_value(py_keras()$backend$standardize_dtype(x$dtype))
}

is_tensor_like <- function(x) {
  inherits(x, c("tensorflow.python.types.core.Tensor",
                "keras.src.backend.common.keras_tensor.KerasTensor",
                "keras.src.backend.common.variables.Variable"))
}

# An R operand of an operation with the tensor `like`: a single number goes
# as a Python scalar (Keras gives it the tensor's dtype); an array of the same
# kind (floating or integer) takes the tensor's dtype, so float32 stays
# float32.
as_tensor_operand <- function(value, like) {
  if (!is.atomic(value) || is.null(value)) return(value)
  if (length(value) == 1L && is.null(dim(value))) return(value)
  dtype <- tensor_dtype(like)
  same_kind <- (is.double(value) && grepl("float", dtype)) ||
    (is.integer(value) && grepl("int", dtype))
  if (same_kind) as_numpy(value, dtype = dtype)
  else as_numpy(value)
}

tensor_binary_ops <- c(
  "+" = "add", "-" = "subtract", "*" = "multiply", "/" = "divide",
  "^" = "power", "%%" = "mod", "%/%" = "floor_divide",
  "==" = "equal", "!=" = "not_equal", "<" = "less", "<=" = "less_equal",
  ">" = "greater", ">=" = "greater_equal", "&" = "logical_and",
  "|" = "logical_or"
)

tensor_ops <- function(e1, e2) {
  ops <- py_keras()$ops
  if (missing(e2)) {
    return(switch(.Generic,
      "-" = with_py_errors(ops$negative(e1)),
      "+" = e1,
      "!" = with_py_errors(ops$logical_not(e1)),
      tensor_unsupported(.Generic)
    ))
  }
  fn <- tensor_binary_ops[[.Generic]]
  if (is_tensor_like(e1)) e2 <- as_tensor_operand(e2, e1)
  else e1 <- as_tensor_operand(e1, e2)
  with_py_errors(ops[[fn]](e1, e2))
}

tensor_math_ops <- c(
  abs = "abs", sign = "sign", sqrt = "sqrt", floor = "floor",
  ceiling = "ceil", trunc = "trunc", exp = "exp", expm1 = "expm1",
  log1p = "log1p", log2 = "log2", log10 = "log10", cos = "cos", sin = "sin",
  tan = "tan", acos = "arccos", asin = "arcsin", atan = "arctan",
  cosh = "cosh", sinh = "sinh", tanh = "tanh", acosh = "arccosh",
  asinh = "arcsinh", atanh = "arctanh", cumsum = "cumsum",
  cumprod = "cumprod"
)

tensor_math <- function(x, ...) {
  ops <- py_keras()$ops
  if (.Generic == "log") {
    base <- list(...)$base
    out <- with_py_errors(ops$log(x))
    return(if (is.null(base)) out else out / log(base))
  }
  if (.Generic == "round") {
    digits <- list(...)$digits %||% 0L
    return(with_py_errors(ops$round(x, decimals = as.integer(digits))))
  }
  fn <- tensor_math_ops[.Generic]
  if (is.na(fn)) tensor_unsupported(.Generic)
  with_py_errors(ops[[fn]](x))
}

tensor_summary <- function(..., na.rm = FALSE) {
  ops <- py_keras()$ops
  reduce <- function(x) {
    switch(.Generic,
      sum = ops$sum(x), prod = ops$prod(x), max = ops$max(x),
      min = ops$min(x), any = ops$any(x), all = ops$all(x),
      range = ops$stack(list(ops$min(x), ops$max(x))),
      tensor_unsupported(.Generic)
    )
  }
  parts <- lapply(list(...), function(x) {
    if (!is_tensor_like(x)) x <- ops$convert_to_tensor(x)
    with_py_errors(reduce(x))
  })
  if (length(parts) == 1L) return(parts[[1L]])
  with_py_errors(reduce(ops$stack(parts)))
}

tensor_mean <- function(x, ...) with_py_errors(py_keras()$ops$mean(x))

tensor_unsupported <- function(generic, call = rlang::caller_env()) {
  cli::cli_abort(
    "{.fn {generic}} is not supported for tensors.",
    class = c("kerasbackup_unsupported", "kerasbackup_error"), call = call
  )
}

# ------------------------------------------------------------ indexing

tensor_subset <- function(x, ..., drop = TRUE) {
  tensor_index(x, as.list(substitute(list(...)))[-1L], parent.frame(), drop)
}

# `x[...] <- value`: the positions selected by the same indices are
# replaced (value is broadcast to their shape); the result is a new tensor.
tensor_subassign <- function(x, ..., value) {
  tensor_update(x, as.list(substitute(list(...)))[-1L], parent.frame(), value)
}

tensor_update <- function(x, exprs, env, value) {
  ops <- py_keras()$ops
  shape <- tensor_dim(x)
  if (anyNA(shape)) {
    cli::cli_abort("Assigning into a tensor needs its full shape; it has {.code {shape}}.",
                   class = c("kerasbackup_invalid_index", "kerasbackup_error"),
                   call = env)
  }
  with_py_errors({
    positions <- ops$reshape(ops$arange(as.integer(prod(shape)), dtype = "int32"),
                             as.list(shape))
    selected <- tensor_index(positions, exprs, env, drop = TRUE)
    flat <- ops$reshape(selected, list(-1L, 1L))
    value <- ops$cast(as_tensor_operand(value, x), ops$dtype(x))
    updates <- ops$reshape(ops$broadcast_to(value, as.list(tensor_dim(selected))),
                           list(-1L))
    out <- ops$scatter_update(ops$reshape(x, list(-1L)), flat, updates)
    ops$reshape(out, as.list(shape))
  })
}

#' Subset a tensor, or assign into a subset
#'
#' `op_subset(x, ...)` is `x[...]` and `op_subset(x, ...) <- value` (or
#' `op_subset_set(x, ..., value = value)`) is `x[...] <- value`, with the
#' 1-based indexing rules of [tensor-methods]. `x` may also be an R array,
#' which is converted to a tensor first.
#'
#' @param x A tensor or R array.
#' @param ... Indices, one per axis.
#' @param value Values to assign (broadcast to the selection's shape).
#' @returns A tensor.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' x <- op_ones(c(2, 3))
#' op_subset(x, 1, 2:3)
#' op_subset_set(x, 1, , value = 0)
op_subset <- function(x, ...) {
  if (!is_tensor_like(x)) x <- py_keras()$ops$convert_to_tensor(x)
  tensor_index(x, as.list(substitute(list(...)))[-1L], parent.frame(), TRUE)
}

#' @rdname op_subset
#' @export
`op_subset<-` <- function(x, ..., value) {
  if (!is_tensor_like(x)) x <- py_keras()$ops$convert_to_tensor(x)
  tensor_update(x, as.list(substitute(list(...)))[-1L], parent.frame(), value)
}

#' @rdname op_subset
#' @export
op_subset_set <- function(x, ..., value) {
  if (!is_tensor_like(x)) x <- py_keras()$ops$convert_to_tensor(x)
  tensor_update(x, as.list(substitute(list(...)))[-1L], parent.frame(), value)
}

tensor_index <- function(x, exprs, env, drop) {
  items <- lapply(exprs, index_item, env = env)
  shape <- tensor_dim(x)
  items <- expand_ellipsis(items, length(shape))
  builtins <- reticulate::import_builtins()
  key <- list()
  advanced <- list()
  axis <- 0L       # axis of x the next item indexes
  out_axis <- 0L   # axis of the basic-indexed result it lands on
  for (item in items) {
    if (item$kind == "newaxis") {
      key <- c(key, list(NULL))
      out_axis <- out_axis + 1L
      next
    }
    axis <- axis + 1L
    n <- if (axis <= length(shape)) shape[[axis]] else NA_integer_
    if (axis > length(shape)) {
      cli::cli_abort(
        "Too many indices for a tensor of rank {length(shape)}.",
        class = c("kerasbackup_invalid_index", "kerasbackup_error"),
        call = env
      )
    }
    if (item$kind == "all") {
      key <- c(key, list(builtins$slice(NULL)))
      out_axis <- out_axis + 1L
    } else if (item$kind == "slice") {
      key <- c(key, list(builtins$slice(item$start, item$stop, item$step)))
      out_axis <- out_axis + 1L
    } else if (item$kind == "scalar") {
      if (!is.na(n) && (item$value >= n || item$value < -n)) {
        abort_bad_index(if (item$value >= 0L) item$value + 1L else item$value, env)
      }
      if (drop) {
        key <- c(key, list(item$value))
      } else {
        stop_at <- if (item$value == -1L) NULL else item$value + 1L
        key <- c(key, list(builtins$slice(item$value, stop_at)))
        out_axis <- out_axis + 1L
      }
    } else {
      # Positions along the axis (vector, logical or tensor): taken after
      # the basic indexing, so that several axes index independently.
      key <- c(key, list(builtins$slice(NULL)))
      advanced[[length(advanced) + 1L]] <- list(
        axis = out_axis, index = positions_0based(item, n, env)
      )
      out_axis <- out_axis + 1L
    }
  }
  out <- with_py_errors(py_rapi()$getitem(x, reticulate::tuple(key)))
  ops <- py_keras()$ops
  for (adv in advanced) {
    out <- with_py_errors(ops$take(out, adv$index, axis = adv$axis))
  }
  out
}

index_item <- function(expr, env) {
  if (identical(expr, quote(expr = ))) return(list(kind = "all"))
  if (identical(expr, quote(..))) return(list(kind = "ellipsis"))
  if (is.call(expr) && identical(expr[[1L]], quote(`:`))) {
    item <- range_item(expr, env)
    if (!is.null(item)) return(item)
  }
  value <- eval(expr, env)
  if (is.null(value)) return(list(kind = "newaxis"))
  if (inherits(value, "python.builtin.ellipsis")) return(list(kind = "ellipsis"))
  if (inherits(value, "python.builtin.slice")) {
    return(list(kind = "slice", start = value$start, stop = value$stop,
                step = value$step))
  }
  if (is_tensor_like(value)) return(list(kind = "tensor", value = value))
  if (is.logical(value)) {
    return(list(kind = "positions", value = which(value)))
  }
  if (!is.numeric(value) || anyNA(value) || any(value != trunc(value))) {
    abort_bad_index(value, env)
  }
  value <- as.integer(value)
  if (any(value == 0L)) abort_bad_index(value, env)
  if (length(value) == 1L) {
    return(list(kind = "scalar", value = if (value > 0L) value - 1L else value))
  }
  run_as_slice(value) %||% list(kind = "positions", value = value)
}

# `a:b` and `a:b:step`, with NA for an open end: Python slices including
# both ends.
range_item <- function(expr, env) {
  step <- 1L
  if (is.call(expr[[2L]]) && identical(expr[[2L]][[1L]], quote(`:`))) {
    step <- eval(expr[[3L]], env)
    expr <- expr[[2L]]
  }
  start <- eval(expr[[2L]], env)
  end <- eval(expr[[3L]], env)
  if (!(length(start) == 1L && length(end) == 1L && length(step) == 1L)) {
    return(NULL)
  }
  if (!is.na(start) && !is.na(end) && step == 1L) return(NULL)
  slice_item(start, end, step, env)
}

slice_item <- function(start, end, step, env) {
  ok <- function(v) is.na(v) || (is.numeric(v) && v == trunc(v) && v != 0)
  if (!ok(start) || !ok(end) || is.na(step) || step == 0) {
    abort_bad_index(c(start, end), env)
  }
  step <- as.integer(step)
  py_start <- if (is.na(start)) NULL else if (start > 0) start - 1L else start
  py_stop <- if (is.na(end)) {
    NULL
  } else if (step > 0L) {
    if (end > 0) end else if (end == -1) NULL else end + 1L
  } else {
    if (end > 1) end - 2L else if (end == 1) NULL else end - 1L
  }
  list(kind = "slice", start = as_int_or_null(py_start),
       stop = as_int_or_null(py_stop),
       step = if (step == 1L) NULL else step)
}

# A vector like 2:5 or seq(1, 9, by = 2) becomes a slice.
run_as_slice <- function(value) {
  step <- value[[2L]] - value[[1L]]
  n <- length(value)
  if (step == 0L || sign(value[[1L]]) != sign(value[[n]])) return(NULL)
  if (!identical(value, seq.int(value[[1L]], by = step, length.out = n))) {
    return(NULL)
  }
  slice_item(value[[1L]], value[[n]], step, NULL)
}

expand_ellipsis <- function(items, rank) {
  kinds <- vapply(items, `[[`, "", "kind")
  at <- which(kinds == "ellipsis")
  if (length(at) > 1L) {
    cli::cli_abort("Only one {.code ..} or {.fn all_dims} is allowed.",
                   class = c("kerasbackup_invalid_index", "kerasbackup_error"))
  }
  used <- sum(!kinds %in% c("ellipsis", "newaxis"))
  if (!length(at)) return(items)
  fill <- rep(list(list(kind = "all")), max(rank - used, 0L))
  c(items[seq_len(at - 1L)], fill, items[-seq_len(at)])
}

positions_0based <- function(item, n, env) {
  if (item$kind == "tensor") {
    index <- item$value
    ops <- py_keras()$ops
    # 1-based as R positions are; negative ones count from the end.
    return(with_py_errors(ops$where(ops$greater(index, 0L),
                                    ops$subtract(index, 1L), index)))
  }
  value <- as.integer(item$value)
  negative <- value < 0L
  if (any(negative)) {
    if (is.na(n)) abort_bad_index(value, env)
    value[negative] <- value[negative] + n + 1L
  }
  if (!is.na(n) && any(value < 1L | value > n)) abort_bad_index(item$value, env)
  as_numpy(value - 1L, dtype = "int32")
}

abort_bad_index <- function(value, env) {
  cli::cli_abort(
    c("Invalid tensor index {.code {describe_value(value)}}.",
      i = "Indices are 1-based whole numbers (negative ones count from the
           end), logical vectors, ranges such as {.code 2:5} or
           {.code NA:-1}, {.code NULL}/{.code newaxis}, or {.code ..}."),
    class = c("kerasbackup_invalid_index", "kerasbackup_error"),
    call = env
  )
}

#' Convert to a TensorFlow tensor
#'
#' As the tensorflow R package's `as_tensor()`: an R value (or tensor) as a
#' `tf.Tensor`, optionally cast to `dtype` and reshaped (in row-major order,
#' as TensorFlow does). A single R number or string gives a scalar tensor;
#' vectors and arrays keep their shape.
#'
#' @param x An R vector, array, or a tensor.
#' @param dtype Optional dtype name, e.g. `"float32"`.
#' @param ... Unused.
#' @param shape Optional new shape (`NA` or `-1` for one unknown size).
#' @param name Optional name of the tensor.
#' @returns A tensor.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' as_tensor(1:6, "float32", shape = c(2, 3))
#' as_tensor("a string")
as_tensor <- function(x, dtype = NULL, ..., shape = NULL, name = NULL) {
  rlang::check_dots_empty()
  if (!is_py_object(x) && is.atomic(x) && (length(x) != 1L || !is.null(dim(x)))) {
    if (is.null(dim(x))) x <- array(x)
    x <- as_numpy(x)
  }
  with_py_errors({
    out <- if (is_tensor_like(x) && !is.null(dtype)) {
      tf$cast(x, dtype, name = name)
    } else {
      tf$convert_to_tensor(x, dtype = dtype, name = name)
    }
    if (!is.null(shape)) {
      shape <- vapply(as.list(shape), function(d) {
        if (is.null(d) || is.na(d)) -1L else as.integer(d)
      }, 1L)
      out <- tf$reshape(out, as.list(shape))
    }
    out
  })
}

#' Create a Keras variable
#'
#' @param initializer The initial value (an R array or tensor) or an
#'   initializer (name or object, then `shape` is needed).
#' @param shape Shape, for an initializer.
#' @param dtype Optional dtype name.
#' @param trainable Whether training updates it.
#' @param autocast Whether it is cast to the compute dtype in layers with a
#'   mixed-precision policy.
#' @param aggregation,synchronization How distributed replicas combine and
#'   synchronise it.
#' @param name Optional name.
#' @returns A Keras `Variable`.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' v <- keras_variable(matrix(1:4, 2), dtype = "float32")
#' as.array(v)
keras_variable <- function(initializer, shape = NULL, dtype = NULL,
                           trainable = TRUE, autocast = TRUE,
                           aggregation = "none", synchronization = "auto",
                           name = NULL) {
  if (is.atomic(initializer) && !is.character(initializer)) {
    if (is.null(dim(initializer)) && length(initializer) != 1L) {
      initializer <- array(initializer)
    }
    if (length(initializer) != 1L || !is.null(dim(initializer))) {
      initializer <- as_numpy(initializer)
    }
  }
  with_py_errors(py_keras()$Variable(
    initializer, shape = if (!is.null(shape)) as_shape(shape),
    dtype = dtype, trainable = trainable, autocast = autocast,
    aggregation = aggregation, synchronization = synchronization, name = name
  ))
}
