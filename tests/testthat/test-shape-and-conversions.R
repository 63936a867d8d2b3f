skip_if_keras3_front_end()

# shape() and the argument conversions shared by all generated wrappers.

test_that("shape() takes numbers, NA/NULL/-1 for unknown, lists and shapes", {
  s <- shape(NA, 28, 28)
  expect_s3_class(s, "keras_shape")
  expect_identical(format(s), "shape(NA, 28, 28)")
  expect_output(print(shape(NULL, 3)), "shape(NA, 3)", fixed = TRUE)
  expect_identical(shape(-1, 2), shape(NA, 2))
  expect_identical(shape(list(2, NULL), c(3, 4)), shape(2, NA, 3, 4))
  expect_identical(shape(shape(1, 2), 3), shape(1, 2, 3))
  expect_identical(shape(), new_shape(list()))
})

test_that("shape() subsets, combines, converts and compares", {
  s <- shape(32, NA, 3)
  expect_identical(length(s), 3L)
  expect_identical(as.integer(s), c(32L, NA, 3L))
  expect_identical(as.list(s), list(32L, NULL, 3L))
  expect_identical(s[2:3], shape(NA, 3))
  expect_identical(c(s, 10), shape(32, NA, 3, 10))
  expect_true(s == shape(32, NULL, 3))
  expect_true(s != c(32, 1, 3))
  expect_false(s == shape(32, NA))
  expect_error(s + 1, class = "kerasbackup_invalid_argument")
})

test_that("a bad dimension is a classed error naming the argument", {
  err <- plain_message(shape(2.5))
  expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
  expect_match(err$message, "whole numbers", fixed = TRUE)
  err <- plain_message(as_shape(c(2, -3), "input_shape"))
  expect_identical(err$cnd$arg, "input_shape")
  expect_error(shape("a"), class = "kerasbackup_invalid_argument")
})

test_that("arguments the caller did not give, and trailing commas, drop out", {
  f <- function(object, units, activation = NULL, ...) {
    capture_args(list(units = as_integer), ignore = "object")
  }
  expect_identical(f(, 10, ), list(units = 10L))
  expect_identical(f(units = 3, name = "a", ), list(units = 3L, name = "a"))
  expect_identical(f(units = 3, activation = NULL), list(units = 3L, activation = NULL))
  expect_identical(f(), setNames(list(), character()))
  g <- function(x, ...) capture_args()
  expect_identical(g(1, 2, k = 3, ), list(x = 1, 2, k = 3))
})

test_that("whole numbers become integers; other numbers are a classed error", {
  expect_identical(as_integer(3), 3L)
  expect_identical(as_integer(c(1, 2)), 1:2)
  expect_identical(as_integer(matrix(c(1, 2, 3, 4), 2)), matrix(1:4, 2))
  for (keep in list(NULL, list(1, 2), "same", TRUE, 4L)) {
    expect_identical(as_integer(keep), keep)
  }
  for (bad in list(2.5, NA_real_, Inf, c(1, 1.5), 2^40)) {
    err <- plain_message(as_integer(bad, "units"))
    expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
    expect_identical(err$cnd$arg, "units")
  }
  expect_identical(as_integer_if_whole(2), 2L)
  expect_identical(as_integer_if_whole(0.5), 0.5)
  expect_identical(as_integer_tuple(3), 3L)
  expect_identical(as_integer_tuple("same"), "same")
})

test_that("axes are 1-based; negative axes stay; 0 is an error", {
  expect_identical(as_axis(1), 0L)
  expect_identical(as_axis(3), 2L)
  expect_identical(as_axis(-1), -1L)
  expect_identical(as_axis(c(1, -1)), list(0L, -1L))
  expect_null(as_axis(NULL))
  err <- plain_message(as_axis(0, "axis"))
  expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
  expect_match(err$message, "1-based", fixed = TRUE)
})

test_that("a bad int is rejected in R, before Python starts", {
  out <- callr::r(function() {
    library(kerasbackup)
    err <- tryCatch(layer_conv_2d(filters = 2.5, kernel_size = 3), error = function(e) e)
    s <- shape(NA, 3)
    list(class = class(err), arg = err$arg, msg = conditionMessage(err),
         shape = format(s), python = reticulate::py_available())
  })
  expect_true("kerasbackup_invalid_argument" %in% out$class)
  expect_identical(out$arg, "filters")
  expect_match(out$msg, "`filters` must be a whole number", fixed = TRUE)
  expect_identical(out$shape, "shape(NA, 3)")
  expect_false(out$python)
})

test_that("shapes convert to Python tuples and back from tensors", {
  skip_if_no_python()
  expect_identical(reticulate::py_str(reticulate::r_to_py(shape(2, NA))), "(2, None)")
  expect_identical(reticulate::py_str(as_shape(c(NA, 3))), "(None, 3)")
  expect_null(as_shape(NULL))
  x <- op_zeros(c(3, 2))
  expect_identical(shape(x), shape(3, 2))
  expect_identical(shape(x, 4), shape(3, 2, 4))
  input <- keras_object("Input")(shape = shape(NA, 5))
  expect_identical(shape(input), shape(NA, NA, 5))
})

test_that("R functions become Python callables with their argument names", {
  skip_if_no_python()
  inspect <- reticulate::import("inspect")
  f <- structure(function(y_true, y_pred) y_true, name = "my_fn")
  fn <- as_callable(f)
  expect_identical(reticulate::py_str(inspect$signature(fn)), "(y_true, y_pred)")
  expect_identical(reticulate::py_to_r(reticulate::py_get_attr(fn, "__name__")), "my_fn")
  # A package wrapper is resolved to the Keras object it wraps.
  expect_identical(reticulate::py_str(as_callable(activation_relu)),
                   reticulate::py_str(keras_object("activations.relu")))
  expect_identical(reticulate::py_str(as_callable(loss_huber)),
                   reticulate::py_str(keras_object("losses.huber")))
})

test_that("every generated wrapper resolves to a Keras object", {
  skip_if_no_python()
  ns <- asNamespace("kerasbackup")
  exports <- getNamespaceExports("kerasbackup")
  funs <- Filter(function(name) is.function(ns[[name]]), exports)
  resolved <- vapply(funs, function(name) {
    !is.null(tryCatch(wrapped_py_object(ns[[name]]), error = function(e) NULL))
  }, TRUE)
  # Every wrapper made by the generator names a Python object that exists.
  generated <- funs[vapply(funs, function(name) {
    body <- body(ns[[name]])
    is.call(body) && length(body) == 2L && is.call(body[[2L]]) &&
      as.character(body[[2L]][[1L]]) %in% names(wrapper_paths)
  }, TRUE)]
  expect_gt(length(generated), 700)
  expect_identical(names(which(!resolved[generated])), character())
})
