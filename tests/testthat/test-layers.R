skip_if_keras3_front_end()

# Generated layer wrappers: in a Sequential model, on a tensor, and alone.

test_that("a layer is added to a Sequential model, which is returned invisibly", {
  skip_if_no_python()
  model <- keras_model_sequential(input_shape = c(28, 28, 1))
  expect_invisible(layer_conv_2d(model, filters = 4, kernel_size = c(3, 3)))
  model %>%
    layer_max_pooling_2d(pool_size = 2) %>%
    layer_flatten() %>%
    layer_dense(10, activation = "softmax")
  expect_length(model$layers, 4)
  expect_identical(shape(model(op_ones(c(2, 28, 28, 1)))), shape(2, 10))
  expect_identical(model$layers[[1]]$kernel_size, list(3L, 3L))
  expect_identical(model$layers[[2]]$pool_size, list(2L, 2L))
})

test_that("layers compose with the native pipe too, in reading order", {
  skip_if_no_python()
  model <- keras_model_sequential(input_shape = 8) |>
    layer_dense(4, name = "first") |>
    layer_dense(2, name = "second")
  expect_identical(vapply(model$layers, function(l) l$name, ""), c("first", "second"))
})

test_that("a layer called on a tensor returns its output", {
  skip_if_no_python()
  x <- op_ones(c(2, 5, 3))
  expect_identical(shape(layer_dense(x, units = 4)), shape(2, 5, 4))
  expect_identical(shape(layer_lstm(x, units = 6)), shape(2, 6))
  expect_identical(shape(layer_conv_1d(x, filters = 2, kernel_size = 3)), shape(2, 3, 2))
  expect_identical(shape(layer_global_average_pooling_1d(x)), shape(2, 3))
  expect_identical(shape(layer_embedding(op_ones(c(2, 4), dtype = "int32"),
                                         input_dim = 10, output_dim = 3)),
                   shape(2, 4, 3))
})

test_that("without object, a layer wrapper returns the layer", {
  skip_if_no_python()
  layer <- layer_dense(units = 3, activation = "relu", name = "d")
  expect_s3_class(layer, "keras.src.layers.core.dense.Dense")
  expect_identical(layer$units, 3L)
  expect_identical(layer$name, "d")
  expect_s3_class(bidirectional(layer = layer_lstm(units = 2)),
                  "keras.src.layers.rnn.bidirectional.Bidirectional")
  expect_s3_class(rnn_cell_gru(units = 2), "keras.src.layers.rnn.gru.GRUCell")
  expect_s3_class(layer_rnn(cell = rnn_cells_stack(list(rnn_cell_lstm(2), rnn_cell_lstm(3)))),
                  "keras.src.layers.rnn.rnn.RNN")
})

test_that("merging layers take a list of tensors or several tensors", {
  skip_if_no_python()
  a <- op_ones(c(2, 3))
  b <- op_zeros(c(2, 3))
  expect_identical(shape(layer_concatenate(list(a, b))), shape(2, 6))
  expect_identical(shape(layer_concatenate(a, b, axis = 1)), shape(4, 3))
  expect_identical(as_r(layer_add(a, b, a)), matrix(2, 2, 3))
  expect_s3_class(layer_multiply(), "keras.src.layers.merging.multiply.Multiply")
})

test_that("layer arguments follow keras3's conventions", {
  skip_if_no_python()
  # 1-based axis, integer units, shapes with unknown dimensions
  expect_identical(layer_batch_normalization(axis = 2)$axis, 1L)
  expect_identical(layer_layer_normalization(axis = -1)$axis, -1L)
  expect_identical(layer_reshape(target_shape = c(2, NA))$target_shape, list(2L, NULL))
  expect_identical(layer_permute(dims = c(2, 1))$dims, list(2L, 1L))
  # R functions as callables
  lambda <- layer_lambda(f = function(x) op_multiply(x, 2))
  expect_identical(as_r(lambda(op_ones(c(1, 2)))), matrix(2, 1, 2))
  dense <- layer_dense(units = 2, activation = function(x) op_add(x, 1),
                       kernel_initializer = "zeros")
  expect_identical(as_r(dense(op_ones(c(1, 3)))), matrix(1, 1, 2))
  expect_identical(py_text(layer_dense(units = 2, activation = activation_relu)$activation),
                   py_text(keras_object("activations.relu")))
})

test_that("a non-whole int argument is a classed error naming it", {
  err <- plain_message(layer_dense(units = 2.5))
  expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
  expect_identical(err$cnd$arg, "units")
  expect_identical(err$message, "`units` must be a whole number.\nx Received: `2.5`.")
  err <- plain_message(layer_conv_2d(filters = 2, kernel_size = c(3, 1.5)))
  expect_identical(err$cnd$arg, "kernel_size")
  err <- plain_message(layer_dropout(rate = 1.5))
  expect_identical(err$message, "`rate` must be a number in [0, 1).\nx Received: `1.5`.")
  err <- plain_message(layer_concatenate(axis = 0))
  expect_identical(err$cnd$arg, "axis")
})

test_that("initializers, regularizers and constraints work inside a layer", {
  skip_if_no_python()
  layer <- layer_dense(
    units = 3,
    kernel_initializer = initializer_constant(0.5),
    bias_initializer = initializer_zeros(),
    kernel_regularizer = regularizer_l1_l2(l1 = 0.01, l2 = 0.01),
    kernel_constraint = constraint_maxnorm(max_value = 1),
    bias_constraint = constraint_nonneg()
  )
  out <- layer(op_ones(c(1, 2)))
  expect_equal(as_r(out), matrix(1, 1, 3))
  expect_equal(as.numeric(as_r(layer$losses[[1]])), 0.01 * 3 + 0.01 * 6 * 0.25, tolerance = 1e-6)
  expect_s3_class(layer$kernel_constraint, "keras.src.constraints.constraints.MaxNorm")
  expect_s3_class(initializer_he_normal(seed = 1), "keras.src.initializers.random_initializers.HeNormal")
  expect_identical(dim(as_r(initializer_glorot_uniform(seed = 2)(shape(3, 4)))), c(3L, 4L))
  expect_s3_class(regularizer_orthogonal(factor = 0.1),
                  "keras.src.regularizers.regularizers.OrthogonalRegularizer")
  expect_s3_class(constraint_unitnorm(axis = 1), "keras.src.constraints.constraints.UnitNorm")
  expect_identical(constraint_unitnorm(axis = 1)$axis, 0L)
})

test_that("preprocessing layers adapt and run", {
  skip_if_no_python()
  norm <- layer_normalization()
  norm$adapt(matrix(c(1, 2, 3, 4, 5, 6), 3))
  expect_equal(as.numeric(as_r(norm$mean)), c(2, 5))
  lookup <- layer_string_lookup(vocabulary = c("a", "b"))
  expect_identical(as.integer(as_r(lookup(c("a", "b", "z")))), c(1L, 2L, 0L))
  expect_identical(shape(layer_rescaling(op_ones(c(2, 2)), scale = 1 / 255)), shape(2, 2))
})

test_that("an NA of any type where a wrapper takes an integer is a classed error", {
  # a logical NA used to reach Keras as True
  cases <- list(
    units = function(v) layer_dense(units = v),
    filters = function(v) layer_conv_2d(filters = v, kernel_size = 3),
    kernel_size = function(v) layer_conv_2d(filters = 2, kernel_size = v),
    patience = function(v) callback_early_stopping(patience = v)
  )
  for (arg in names(cases)) {
    for (value in list(NA, NA_real_, NA_integer_, NA_character_)) {
      label <- paste(arg, "=", deparse(value))
      err <- plain_message(cases[[arg]](value))
      expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
      expect_identical(err$cnd$arg, arg, label = label)
      expect_identical(err$cnd$value, value, label = label)
      expect_match(err$message, paste0("`", arg, "` must be a whole number"),
                   fixed = TRUE, label = label)
    }
  }
  # NULL still passes (Python None), and whole numbers are still integers
  expect_null(kerasbackup:::as_integer(NULL, "units"))
  expect_identical(kerasbackup:::as_integer(3, "units"), 3L)
  skip_if_no_python()
  expect_null(layer_string_lookup(max_tokens = NULL)$max_tokens)
  expect_identical(layer_dense(units = 3)$units, 3L)
})
