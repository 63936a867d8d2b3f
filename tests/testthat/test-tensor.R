skip_if_keras3_front_end()

skip_if_no_python()

test_that("tensors and variables convert to R arrays and numbers", {
  x <- op_ones(c(2, 3))
  expect_identical(as.array(x), array(1, c(2, 3)))
  expect_identical(dim(x), c(2L, 3L))
  expect_identical(length(x), 6L)
  expect_identical(as.numeric(x), rep(1, 6))
  expect_identical(as.integer(tf$constant(c(1.7, -2.2))), c(1L, -2L))
  expect_identical(as.logical(tf$constant(c(TRUE, FALSE))), c(TRUE, FALSE))
  expect_identical(as.array(tf$constant(2.5)), array(2.5, 1L))
  expect_identical(dim(tf$constant(2.5)), integer())

  v <- keras$Variable(matrix(1:6 / 2, 2))
  expect_identical(as.array(v), matrix(1:6 / 2, 2))
  expect_identical(dim(v), c(2L, 3L))
  expect_identical(as.double(v), 1:6 / 2)

  model <- keras_model_sequential(input_shape = 2) %>% layer_dense(1)
  model %>% compile(optimizer = optimizer_adam(learning_rate = 0.25), loss = "mse")
  expect_identical(as.numeric(model$optimizer$learning_rate), 0.25)
})

test_that("symbolic tensors have a shape with NA for unknown sizes", {
  input <- keras$Input(shape = reticulate::tuple(3L, 4L))
  expect_identical(dim(input), c(NA, 3L, 4L))
  expect_identical(length(input), NA_integer_)
  expect_identical(dim(input[, 1, ]), c(NA, 4L))
  expect_identical(dim(input * 2 + 1), c(NA, 3L, 4L))
})

test_that("arithmetic, comparison and logical operators run as Keras ops", {
  x <- tf$constant(matrix(c(1, 2, 3, 4), 2), dtype = "float32")
  expect_equal(as.array(x + 1), matrix(c(2, 3, 4, 5), 2))
  expect_equal(as.array(10 - x), matrix(c(9, 8, 7, 6), 2))
  expect_equal(as.array(x * x), matrix(c(1, 4, 9, 16), 2))
  expect_equal(as.array(x / 2), matrix(c(.5, 1, 1.5, 2), 2))
  expect_equal(as.array(x ^ 2), matrix(c(1, 4, 9, 16), 2))
  expect_equal(as.array(x %% 3), matrix(c(1, 2, 0, 1), 2))
  expect_equal(as.array(x %/% 3), matrix(c(0, 0, 1, 1), 2))
  expect_equal(as.array(-x), -matrix(c(1, 2, 3, 4), 2))
  expect_identical(as.array(x > 2), matrix(c(FALSE, FALSE, TRUE, TRUE), 2))
  expect_identical(as.array(x == 2), matrix(c(FALSE, TRUE, FALSE, FALSE), 2))
  expect_identical(as.array(x != 2 & x < 4), matrix(c(TRUE, FALSE, TRUE, FALSE), 2))
  expect_identical(as.array(!(x >= 3) | x == 4), matrix(c(TRUE, TRUE, FALSE, TRUE), 2))
  # An R operand takes the tensor's precision.
  expect_identical(tensor_dtype_of(x + 1), "float32")
  expect_identical(tensor_dtype_of(x * matrix(2, 2, 2)), "float32")
  expect_identical(tensor_dtype_of(tf$constant(1:3) + 1L), "int32")
  # Tensor with variable: the same method on both sides, no warning.
  v <- keras$Variable(matrix(1, 2, 2), dtype = "float32")
  expect_no_warning(s <- x + v)
  expect_equal(as.array(s), matrix(c(2, 3, 4, 5), 2))
})

test_that("Math and Summary group generics and mean() work on tensors", {
  x <- tf$constant(c(1, 4, 9), dtype = "float32")
  expect_equal(as.array(sqrt(x)), array(c(1, 2, 3)))
  expect_equal(as.array(abs(-x)), array(c(1, 4, 9)))
  expect_equal(as.array(exp(log(x))), array(c(1, 4, 9)), tolerance = 1e-5)
  expect_equal(as.array(log(x, base = 3)), array(log(c(1, 4, 9), 3)), tolerance = 1e-6)
  expect_equal(as.array(round(x / 3, digits = 1)), array(c(.3, 1.3, 3)), tolerance = 1e-6)
  expect_equal(as.array(cumsum(x)), array(c(1, 5, 14)))
  expect_equal(as.numeric(sum(x)), 14)
  expect_equal(as.numeric(prod(x)), 36)
  expect_equal(as.numeric(max(x)), 9)
  expect_equal(as.numeric(min(x, tf$constant(0, dtype = "float32"))), 0)
  expect_equal(as.numeric(range(x)), c(1, 9))
  expect_equal(as.numeric(mean(x)), 14 / 3, tolerance = 1e-6)
  expect_true(as.logical(any(x > 8)))
  expect_false(as.logical(all(x > 8)))
  cnd <- plain_message(gamma(x))
  expect_true("kerasbackup_unsupported" %in% cnd$class)
})

test_that("`[` indexes tensors 1-based, as keras3 does", {
  m <- matrix(1:12, 3)  # 3 x 4
  x <- tf$constant(m)
  expect_identical(as.array(x[2, ]), array(m[2, ]))
  expect_identical(as.array(x[, 2]), array(m[, 2]))
  expect_identical(as.array(x[2:3, ]), m[2:3, ])
  expect_identical(as.array(x[, -1]), array(m[, 4]))
  expect_identical(as.array(x[-2, -1]), array(m[2, 4]))
  expect_identical(as.array(x[, NA:-2]), m[, 1:3])
  expect_identical(as.array(x[2:NA, ]), m[2:3, ])
  expect_identical(as.array(x[, c(4, 1)]), m[, c(4, 1)])
  expect_identical(as.array(x[c(TRUE, FALSE, TRUE), ]), m[c(1, 3), ])
  expect_identical(as.array(x[c(1, 3), c(2, 4)]), m[c(1, 3), c(2, 4)])
  expect_identical(as.array(x[3:1, ]), m[3:1, ])
  expect_identical(as.array(x[seq(1, 3, by = 2)]), m[c(1, 3), ])
  expect_identical(dim(x[1, , drop = FALSE]), c(1L, 4L))
  expect_identical(dim(x[NULL, , ]), c(1L, 3L, 4L))
  expect_identical(dim(x[, newaxis]), c(3L, 1L, 4L))
  a <- tf$constant(array(1:24, c(2, 3, 4)))
  expect_identical(as.array(a[.., 1]), array(1:24, c(2, 3, 4))[, , 1])
  expect_identical(as.array(a[1, all_dims()]), array(1:24, c(2, 3, 4))[1, , ])
  expect_identical(as.array(a[, , tf$constant(c(1L, 4L))]),
                   array(1:24, c(2, 3, 4))[, , c(1, 4)])

  for (bad in list(quote(x[0, ]), quote(x[1.5, ]), quote(x[, 9]),
                   quote(x[1, 1, 1]))) {
    cnd <- plain_message(eval(bad))
    expect_true("kerasbackup_invalid_index" %in% cnd$class, info = deparse(bad))
  }
})

test_that("as_tensor() converts R values, casts and reshapes in row-major order", {
  t <- as_tensor(1:6, "float32", shape = c(2, 3))
  expect_identical(tensor_dtype_of(t), "float32")
  expect_identical(as.array(t), matrix(as.numeric(1:6), 2, byrow = TRUE))
  expect_identical(dim(as_tensor(2)), integer())
  expect_identical(dim(as_tensor(matrix(1:6, 2))), c(2L, 3L))
  expect_identical(tensor_dtype_of(as_tensor(tf$constant(1L), "float64")), "float64")
  expect_identical(tensor_dtype_of(as_tensor("text")), "string")
  expect_identical(dim(as_tensor(1:6, shape = c(NA, 2))), c(3L, 2L))
})

test_that("`[<-`, op_subset() and op_subset_set() replace selected positions", {
  m <- matrix(as.numeric(1:12), 3)
  x <- tf$constant(m, dtype = "float32")
  y <- x
  y[2, ] <- 0
  expected <- m
  expected[2, ] <- 0
  expect_identical(as.array(y), expected)
  expect_identical(as.array(x), m)  # a new tensor; x is unchanged
  y[, c(1, 4)] <- matrix(c(7, 8, 9, 10, 11, 12), 3)
  expected[, c(1, 4)] <- matrix(c(7, 8, 9, 10, 11, 12), 3)
  expect_identical(as.array(y), expected)
  expect_identical(as.array(op_subset(m, 3, 2:3)), array(m[3, 2:3]))
  z <- op_subset_set(x, -1, -1, value = 100)
  expect_identical(as.array(z)[3, 4], 100)
  op_subset(x, 1, 1) <- -5
  expect_identical(as.array(x)[1, 1], -5)
})

test_that("keras_variable() makes variables that convert and combine", {
  v <- keras_variable(matrix(1:4, 2), dtype = "float32", name = "v")
  expect_identical(as.array(v), matrix(as.numeric(1:4), 2))
  expect_identical(tensor_dtype_of(v), "float32")
  expect_identical(as.array(v * 2), matrix(as.numeric(1:4) * 2, 2))
  w <- keras_variable("zeros", shape = c(2, 3))
  expect_identical(dim(w), c(2L, 3L))
  expect_false(keras_variable(1, trainable = FALSE)$trainable)
})

test_that(".[ ] assigns the parts of lists, vectors, shapes and tuples", {
  .[a, b] <- list(1, "two")
  expect_identical(list(a, b), list(1, "two"))
  .[first, ..] <- c(10, 20, 30)
  .[.., last] <- c(10, 20, 30)
  .[., second, .] <- c(10, 20, 30)
  expect_identical(c(first, last, second), c(10, 30, 20))
  .[rows, cols] <- shape(4, 5)
  expect_identical(c(rows, cols), c(4L, 5L))
  .[p, q] <- tuple(1L, 2L)
  expect_identical(c(p, q), c(1L, 2L))
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(.[a, b] <- c(1, 2, 3))$class)
})
