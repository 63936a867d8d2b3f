# shape(): a tensor shape as an R object (a list of integer or NULL
# dimensions), and the conversion of shape-like values used by as_shape().

#' Tensor shapes
#'
#' `shape()` builds a shape from dimensions, or reads the shape of a tensor.
#' Each argument can be a number, `NA` or `NULL` (an unknown dimension), a
#' vector or list of those, another `shape()`, or a tensor (whose
#' dimensions are spliced in). A scalar integer tensor counts as one
#' dimension; wrap it in [I()] to splice its (empty) shape instead. `-1` is
#' read as unknown too.
#'
#' Shapes print as `shape(NA, 28, 28)`, subset with `[`, combine with
#' [c()], compare with `==` and `!=`, and convert with [as.integer()] (`NA`
#' for unknown dimensions) and [as.list()] (`NULL` for unknown dimensions).
#' Passed to Python they become a tuple, with `None` for unknown
#' dimensions. Every function of this package that takes a shape accepts a
#' `shape()` as well as a plain vector or list.
#'
#' @param ... Dimensions, vectors or lists of dimensions, shapes or tensors.
#' @returns A `keras_shape` object.
#' @family shapes
#' @export
#' @examples
#' shape(NA, 28, 28)
#' s <- shape(32, NULL, 3)
#' length(s)
#' as.integer(s)
#' s[2:3]
#' c(s, 10)
#' s == shape(32, NA, 3)
shape <- function(...) {
  parts <- rlang::list2(...)
  dims <- lapply(parts, shape_dims, arg = "...", minus_one_unknown = TRUE)
  new_shape(do.call(c, c(list(list()), dims)))
}

new_shape <- function(dims) structure(dims, class = "keras_shape")

# One argument of shape() (or a value given where a shape is expected) as
# a list of dimensions: integers, NULL for unknown, or Python scalars.
shape_dims <- function(x, arg = "shape", minus_one_unknown = FALSE) {
  if (inherits(x, "keras_shape")) return(unclass(x))
  if (is.null(x)) return(list(NULL))
  if (inherits(x, "AsIs") && is_py_object(x)) return(tensor_dims(x))
  if (is_py_object(x)) return(py_shape_dims(x, arg))
  if (is.list(x)) {
    out <- lapply(x, shape_dims, arg = arg, minus_one_unknown = minus_one_unknown)
    return(do.call(c, c(list(list()), out)))
  }
  if (is.logical(x) && all(is.na(x))) return(rep(list(NULL), length(x)))
  if (!is.numeric(x)) {
    abort_invalid_arg(arg, x, "a shape: whole numbers, with NA or NULL for unknown dimensions")
  }
  lapply(as.vector(x), function(d) {
    if (is.na(d) || (minus_one_unknown && d == -1)) return(NULL)
    if (!is_whole(d) || d < -1) {
      abort_invalid_arg(arg, x, "a shape: whole numbers >= 0, with NA or NULL for unknown dimensions")
    }
    as.integer(d)
  })
}

py_shape_dims <- function(x, arg) {
  if (inherits(x, c("tensorflow.python.framework.tensor_shape.TensorShape",
                    "python.builtin.tuple", "python.builtin.list"))) {
    return(shape_dims(py_dims(x), arg))
  }
  if (inherits(x, "python.builtin.int")) return(list(reticulate::py_to_r(x)))
  if (reticulate::py_has_attr(x, "shape")) {
    if (is_scalar_int_tensor(x)) return(list(x))
    return(tensor_dims(x))
  }
  abort_invalid_arg(arg, x, "a shape, a tensor or dimensions")
}

tensor_dims <- function(x) py_dims(reticulate::py_get_attr(x, "shape"))

# A Python tuple, list or TensorShape as a list of dimensions (NULL if unknown).
py_dims <- function(shp) {
  if (reticulate::py_has_attr(shp, "as_list")) shp <- shp$as_list()
  if (is_py_object(shp)) shp <- reticulate::py_to_r(shp)
  lapply(as.list(shp), function(d) d)
}

is_scalar_int_tensor <- function(x) {
  dims <- tryCatch(tensor_dims(x), error = function(e) NULL)
  if (!identical(dims, list())) return(FALSE)
  dtype <- tryCatch(as.character(reticulate::py_str(x$dtype)),
                    error = function(e) "")
  grepl("int", dtype, fixed = TRUE)
}

format.keras_shape <- function(x, ...) {
  dims <- vapply(unclass(x), format_dim, "")
  paste0("shape(", paste(dims, collapse = ", "), ")")
}

format_dim <- function(d) {
  if (is.null(d)) "NA" else if (is_py_object(d)) reticulate::py_str(d) else as.character(d)
}

print.keras_shape <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  invisible(x)
}

`[.keras_shape` <- function(x, i) new_shape(unclass(x)[i])

as.integer.keras_shape <- function(x, ...) {
  vapply(unclass(x), function(d) {
    if (is.null(d)) NA_integer_
    else if (is_py_object(d)) as.integer(reticulate::py_to_r(d))
    else as.integer(d)
  }, 0L)
}

as.list.keras_shape <- function(x, ...) unclass(x)

c.keras_shape <- function(...) shape(...)

Ops.keras_shape <- function(e1, e2) {
  if (!.Generic %in% c("==", "!=")) {
    cli::cli_abort("{.code {(.Generic)}} is not defined for shapes; use {.code ==} or {.code !=}.",
                   class = c("kerasbackup_invalid_argument", "kerasbackup_error"))
  }
  same <- identical(as.integer(shape(e1)), as.integer(shape(e2)))
  if (.Generic == "==") same else !same
}

r_to_py.keras_shape <- function(x, convert = FALSE) {
  reticulate::tuple(unclass(x), convert = convert)
}
