skip_if_keras3_front_end()

# The functional API: keras_input(), keras_model(), keras_model_sequential().

dims <- function(tensor) {
  lapply(reticulate::py_to_r(reticulate::py_get_attr(tensor, "shape")),
         function(d) if (is.null(d)) NA_integer_ else d)
}

test_that("keras_input() converts shapes and passes its arguments on", {
  skip_if_no_python()
  expect_identical(dims(keras_input(shape = 3)), list(NA_integer_, 3L))
  expect_identical(dims(keras_input(shape = c(NA, 2))),
                   list(NA_integer_, NA_integer_, 2L))
  expect_identical(dims(keras_input(shape = list(NULL, 4))),
                   list(NA_integer_, NA_integer_, 4L))
  expect_identical(dims(keras_input(shape = shape(5, 6))),
                   list(NA_integer_, 5L, 6L))
  expect_identical(dims(keras_input(shape = 3, batch_size = 8)), list(8L, 3L))
  expect_identical(dims(keras_input(batch_shape = c(2, 7))), list(2L, 7L))
  x <- keras_input(shape = 3, dtype = "int32", name = "ids", sparse = TRUE)
  expect_identical(x$dtype, "int32")
  expect_identical(x$name, "ids")
  expect_true(x$sparse)
  expect_identical(layer_input, keras_input)
})

test_that("keras_input() refuses bad arguments, naming them", {
  skip_if_no_python()
  for (bad in list(list(shape = "a"), list(shape = 3, batch_size = 1.5),
                   list(shape = 3, name = 3), list(shape = 3, sparse = "yes"),
                   list(shape = 3, optional = NA), list(shape = c(2, -3)))) {
    err <- plain_message(do.call(keras_input, bad))
    expect_true("kerasbackup_invalid_argument" %in% err$class)
    expect_match(err$message, paste0("`", names(bad)[length(bad)], "`"),
                 fixed = TRUE)
  }
})

test_that("keras_model() takes one or several inputs and outputs, named or not", {
  skip_if_no_python()
  set_random_seed(1)
  a <- keras_input(shape = 3, name = "a")
  b <- keras_input(shape = 2, name = "b")
  joined <- layer_concatenate(list(a, b))
  out1 <- joined %>% layer_dense(1, name = "out1")
  out2 <- joined %>% layer_dense(2, name = "out2")

  single <- keras_model(list(a), list(layer_dense(a, 1)))
  expect_identical(length(single$inputs), 1L)
  expect_false(is.list(single$output))
  expect_identical(keras_model(a, layer_dense(a, 1), name = "m")$name,
                   "m")

  model <- keras_model(list(a = a, b = b), list(out1 = out1, out2 = out2))
  expect_identical(vapply(model$inputs, function(t) t$name, ""), c("a", "b"))
  model %>% compile(optimizer = optimizer_sgd(),
                    loss = list(out1 = "mse", out2 = "mae"))
  n <- 12
  x <- list(b = matrix(runif(2 * n), n), a = matrix(runif(3 * n), n))
  y <- list(out2 = matrix(runif(2 * n), n), out1 = runif(n))
  history <- model %>% fit(x, y, epochs = 2, batch_size = 4, verbose = 0)
  expect_setequal(names(history$metrics), c("loss", "out1_loss", "out2_loss"))
  pred <- predict(model, x)
  expect_identical(names(pred), c("out1", "out2"))
  expect_identical(dim(pred$out2), c(12L, 2L))
  # Named inputs are matched by name, not position.
  swapped <- predict(model, list(a = x$a, b = x$b))
  expect_identical(swapped, pred)
})

test_that("keras_model_sequential() names its input and takes input_* arguments", {
  skip_if_no_python()
  model <- keras_model_sequential(input_shape = 4, input_name = "features",
                                  input_dtype = "float64", name = "seq") %>%
    layer_dense(2)
  expect_identical(model$name, "seq")
  expect_identical(model$inputs[[1]]$name, "features")
  expect_identical(model$inputs[[1]]$dtype, "float64")
  expect_identical(length(model$layers), 1L)

  model <- keras_model_sequential(input_shape = 4, NULL, layer_dense(units = 3),
                                  layers = list(layer_dense(units = 1)))
  expect_identical(length(model$layers), 2L)
  expect_identical(dims(model$outputs[[1]]), list(NA_integer_, 1L))

  model <- keras_model_sequential(input_batch_shape = c(5, 3), trainable = FALSE) %>%
    layer_dense(1)
  expect_identical(dims(model$inputs[[1]]), list(5L, 3L))
  expect_false(model$trainable)

  err <- plain_message(keras_model_sequential(input_shape = 4,
                                              input_batch_size = 1.5))
  expect_true("kerasbackup_invalid_argument" %in% err$class)
  expect_match(err$message, "`input_batch_size`", fixed = TRUE)
  err <- plain_message(keras_model_sequential(input_shape = 4, trainable = "no"))
  expect_match(err$message, "`trainable`", fixed = TRUE)
})

test_that("%<-% and %<>% are re-exported", {
  c(first, second) %<-% list(1, "b")
  expect_identical(first, 1)
  expect_identical(second, "b")
  x <- c(4, 9)
  x %<>% sqrt()
  expect_identical(x, c(2, 3))
})
