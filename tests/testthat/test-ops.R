skip_if_keras3_front_end()

# Generated op_* wrappers: 1-based axes, integer conversion, shapes, callables.

test_that("axes are 1-based and negative axes count from the end", {
  skip_if_no_python()
  x <- op_reshape(op_arange(24), c(2, 3, 4))
  expect_identical(shape(op_mean(x, axis = 1)), shape(3, 4))
  expect_identical(shape(op_sum(x, axis = 2)), shape(2, 4))
  expect_identical(shape(op_max(x, axis = -1)), shape(2, 3))
  expect_identical(shape(op_sum(x, axis = c(1, 3))), shape(3))
  expect_identical(shape(op_expand_dims(x, axis = 1)), shape(1, 2, 3, 4))
  expect_identical(shape(op_transpose(x, axes = c(3, 1, 2))), shape(4, 2, 3))
  expect_identical(shape(op_moveaxis(x, source = 1, destination = 3)), shape(3, 4, 2))
  expect_identical(shape(op_swapaxes(x, axis1 = 1, axis2 = 3)), shape(4, 3, 2))
  expect_identical(shape(op_concatenate(list(x, x), axis = 2)), shape(2, 6, 4))
  expect_error(op_mean(x, axis = 0), class = "kerasbackup_invalid_argument")
})

test_that("indices given to and returned by ops are 1-based unless zero_indexed", {
  skip_if_no_python()
  v <- c(1, 9, 5)
  expect_identical(as.integer(as_r(op_argmax(v, axis = 1))), 2L)
  expect_identical(as.integer(as_r(op_argmax(v, zero_indexed = TRUE))), 1L)
  expect_identical(as.integer(as_r(op_argsort(v))), c(1L, 3L, 2L))
  expect_identical(as.integer(as_r(op_top_k(v, k = 2)[[2]])), c(2L, 3L))
  expect_identical(as.integer(as_r(op_top_k(v, k = 2, zero_indexed = TRUE)[[2]])), c(1L, 2L))
  expect_identical(as_r(op_one_hot(c(1, 3), num_classes = 3)), rbind(c(1, 0, 0), c(0, 0, 1)))
  expect_identical(as_r(op_one_hot(c(0, 2), num_classes = 3, zero_indexed = TRUE)),
                   rbind(c(1, 0, 0), c(0, 0, 1)))
  expect_identical(as_r(op_one_hot(factor(c("b", "a")), num_classes = 2)),
                   rbind(c(0, 1), c(1, 0)))
  expect_equal(as.numeric(as_r(op_take(c(10, 20, 30), indices = c(3, 1)))), c(30, 10))
  expect_equal(as.numeric(as_r(op_take(c(10, 20, 30), indices = op_array(c(3L, -1L))))),
               c(30, 30))
  expect_error(op_take(c(10, 20), indices = 0), class = "kerasbackup_invalid_argument")
})

test_that("op_one_hot() passes 0s as keras3 does: 0 and 1 both encode the first position", {
  skip_if_no_python()
  labels <- c(0, 1, 2, 9)
  # keras3 shifts only positive values: 0-based labels are accepted, and
  # 0 and 1 share the first position (the help page says so).
  expect_identical(as_r(op_one_hot(labels, num_classes = 10)),
                   rbind(diag(10)[1, ], diag(10)[1, ], diag(10)[2, ], diag(10)[9, ]))
  expect_identical(as_r(op_one_hot(labels, num_classes = 10, zero_indexed = TRUE)),
                   diag(10)[labels + 1, ])
  # A tensor of labels takes the same path.
  expect_identical(as_r(op_one_hot(op_array(c(0L, 3L)), num_classes = 3)),
                   rbind(c(1, 0, 0), c(0, 0, 1)))
  # A negative index gives a row of zeros, as in Keras.
  expect_identical(as_r(op_one_hot(-1, num_classes = 2)), array(c(0, 0)))
  # Elsewhere a 0 is still refused in 1-based mode.
  expect_error(op_take(c(10, 20), indices = c(0, 1)), class = "kerasbackup_invalid_argument")
})

test_that("op_arange() follows keras3: starts at 1, includes `end`, keeps R's number types", {
  skip_if_no_python()
  expect_identical(as_r(op_arange(3)), array(c(1, 2, 3)))
  expect_identical(py_text(op_arange(3)$dtype), "<dtype: 'float32'>")
  expect_identical(as_r(op_arange(3L)), array(1:3))
  expect_identical(py_text(op_arange(3L)$dtype), "<dtype: 'int32'>")
  expect_identical(as_r(op_arange(2L, 5L)), array(2:5))
  expect_identical(as_r(op_arange(1, 10, 3)), array(c(1, 4, 7, 10)))
  expect_identical(as_r(op_arange(5L, 1L, -1L)), array(5:1))
  expect_identical(as_r(op_arange(0L, 4L, include_end = FALSE)), array(0:3))
  expect_identical(as_r(op_arange(0, 1, 0.25)), array(c(0, 0.25, 0.5, 0.75, 1)))
  # An integer dtype makes whole doubles integers (keras3's example
  # op_arange(0, len, dtype = "int32", include_end = FALSE)).
  ints <- op_arange(0, 4, dtype = "int32", include_end = FALSE)
  expect_identical(py_text(ints$dtype), "<dtype: 'int32'>")
  expect_identical(as_r(ints), array(0:3))
  expect_identical(py_text(op_arange(3L, dtype = "float32")$dtype), "<dtype: 'float32'>")
  # `end` may be a scalar tensor, as a dynamic dimension is in a traced call.
  expect_identical(as_r(op_arange(0L, op_convert_to_tensor(3L), include_end = FALSE)),
                   array(0:2))
  expect_identical(as_r(op_arange(op_convert_to_tensor(3L))), array(1:3))
  mask_layer <- Layer("CausalMask", call = function(x) {
    n <- op_shape(x)[[2]]
    i <- op_arange(0L, n, include_end = FALSE)
    op_cast(op_greater_equal(op_expand_dims(i, 2), op_expand_dims(i, 1)), "int32")
  })
  inputs <- keras_input(shape(NA), dtype = "int32")
  model <- keras_model(inputs, mask_layer()(inputs))
  # predict() traces the call, where the sequence length is a tensor.
  expect_identical(unname(predict(model, matrix(1L, 1, 3), verbose = 0)),
                   rbind(c(1L, 0L, 0L), c(1L, 1L, 0L), c(1L, 1L, 1L)))
  expect_identical(names(formals(op_arange)),
                   c("start", "end", "step", "dtype", "include_end"))
  err <- plain_message(op_arange(1, 3, include_end = NA))
  expect_identical(err$cnd$arg, "include_end")
  expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
  expect_error(op_arange(), class = "kerasbackup_invalid_argument")
})

test_that("tensordot takes a count of axes or 1-based axis lists", {
  skip_if_no_python()
  a <- op_ones(c(2, 3, 4))
  b <- op_ones(c(3, 4, 5))
  expect_identical(shape(op_tensordot(a, b, axes = 2)), shape(2, 5))
  expect_identical(shape(op_tensordot(a, b, axes = list(c(2, 3), c(1, 2)))), shape(2, 5))
})

test_that("whole numbers become integers; shapes accept NA and shape()", {
  skip_if_no_python()
  expect_identical(shape(op_eye(3)), shape(3, 3))
  expect_identical(as_r(op_repeat(c(1, 2), repeats = 2)), array(c(1, 1, 2, 2)))
  expect_identical(shape(op_ones(shape(2, 3))), shape(2, 3))
  expect_identical(shape(op_reshape(op_ones(c(2, 6)), c(-1, 3))), shape(4, 3))
  expect_identical(length(op_split(op_ones(c(6, 2)), indices_or_sections = 3)), 3L)
  err <- plain_message(op_top_k(op_ones(3), k = 1.5))
  expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
  expect_identical(err$cnd$arg, "k")
})

test_that("ops take R arrays and several positional tensors", {
  skip_if_no_python()
  m <- matrix(c(1, 2, 3, 4), 2)
  expect_equal(as_r(op_matmul(m, m)), m %*% m)
  expect_equal(as_r(op_add(m, 1)), m + 1)
  grids <- op_meshgrid(c(1, 2), c(3, 4, 5), indexing = "ij")
  expect_identical(shape(grids[[1]]), shape(2, 3))
  expect_equal(as_r(op_einsum("ij,jk->ik", m, m)), m %*% m)
  expect_equal(as_r(op_pmax(c(1, 5), c(3, 2))), array(c(3, 5)))
  expect_identical(op_convert_to_array(op_ones(2)), array(c(1, 1)))
})

test_that("ops take R functions where Keras takes a callable", {
  skip_if_no_python()
  out <- op_while_loop(cond = function(i) op_less(i, 5),
                       body = function(i) list(op_add(i, 1)), loop_vars = list(0))
  expect_equal(as.numeric(as_r(out[[1]])), 5)
  squares <- op_map(function(v) op_multiply(v, v), op_array(c(1, 2, 3)))
  expect_equal(as.numeric(as_r(squares)), c(1, 4, 9))
  picked <- op_cond(TRUE, function() op_ones(1), function() op_zeros(1))
  expect_equal(as.numeric(as_r(picked)), 1)
})

test_that("nn, linalg, math and image ops are there", {
  skip_if_no_python()
  expect_equal(as.numeric(as_r(op_relu(c(-1, 2)))), c(0, 2))
  expect_equal(as.numeric(as_r(op_softmax(c(0, 0)))), c(0.5, 0.5))
  expect_equal(as_r(op_inv(diag(2) * 2)), diag(2) / 2)
  expect_equal(as.numeric(as_r(op_logsumexp(c(0, 0)))), log(2), tolerance = 1e-6)
  img <- op_ones(c(1, 8, 8, 3))
  expect_identical(shape(op_image_resize(img, size = c(4, 4))), shape(1, 4, 4, 3))
  expect_identical(shape(op_image_crop(img, 0, 0, 4, 4)), shape(1, 4, 4, 3))
  expect_identical(shape(op_image_rgb_to_grayscale(img)), shape(1, 8, 8, 1))
})

test_that("op_shape() returns a shape()", {
  skip_if_no_python()
  expect_identical(op_shape(op_ones(c(2, 3))), shape(2, 3))
})

test_that("integer data in the session's first op call works (it crashed R)", {
  skip_if_no_python()
  # Each expression runs first thing in an R process of its own: converting
  # R integers to NumPy before Python had started was a segfault.
  first_call <- function(expr) {
    callr::r(function(code) {
      library(kerasbackup)
      out <- eval(parse(text = code))
      if (inherits(out, "python.builtin.object")) out <- as.array(out)
      out
    }, args = list(code = expr), libpath = .libPaths(), timeout = 300)
  }
  expect_identical(first_call("to_categorical(0:2)"), diag(3))
  expect_identical(first_call("op_one_hot(1:3, 4)"),
                   array(as.double(diag(4)[1:3, ]), c(3L, 4L)))
})

test_that("op_vectorized_map() takes elements first, so it pipes (keras3 >= 1.3.0)", {
  skip_if_no_python()
  expect_identical(names(formals(op_vectorized_map)), c("elements", "f"))
  x <- op_convert_to_tensor(matrix(c(1, 2, 3, 4, 5, 6), 2))
  doubled <- x |> op_vectorized_map(function(e) e * 2)
  expect_equal(as_r(doubled), matrix(c(2, 4, 6, 8, 10, 12), 2))
  sums <- op_vectorized_map(f = function(e) op_sum(e), elements = x)
  expect_equal(as.numeric(as_r(sums)), c(9, 12))
})
