skip_if_keras3_front_end()

skip_if_no_python()

two_in_two_out <- function() {
  set_random_seed(3)
  a <- keras_input(shape = 3, name = "a")
  b <- keras_input(shape = 2, name = "b")
  h <- keras$layers$Concatenate()(list(a, b))
  reg <- keras$layers$Dense(1L, name = "reg")(h)
  cls <- keras$layers$Dense(3L, activation = "softmax", name = "cls")(h)
  model <- keras_model(inputs = list(a, b), outputs = list(reg, cls))
  model %>% compile(optimizer = "adam",
                    loss = list(reg = "mse", cls = "sparse_categorical_crossentropy"),
                    metrics = list(cls = "accuracy"))
  model
}

multi_data <- function(n = 24) {
  set.seed(4)
  list(a = matrix(runif(n * 3), n), b = matrix(runif(n * 2), n),
       reg = runif(n), cls = sample(0:2, n, TRUE))
}

test_that("fit() takes R vectors, matrices and arrays", {
  set_random_seed(5)
  model <- keras_model_sequential(input_shape = c(4, 5)) %>%
    layer_dense(2) %>% layer_dense(1)
  model %>% compile(optimizer = "sgd", loss = "mse")
  x <- array(runif(10 * 4 * 5), c(10, 4, 5))
  h <- model %>% fit(x, runif(10), epochs = 1, verbose = 0, batch_size = 5)
  expect_identical(h$params$steps, 2L)
  expect_identical(dim(predict(model, x, verbose = 0)), c(10L, 4L, 1L))

  model <- keras_model_sequential(input_shape = 1) %>% layer_dense(1)
  model %>% compile(optimizer = "sgd", loss = "mse")
  h <- model %>% fit(as.numeric(1:8), as.numeric(2 * 1:8), epochs = 1, verbose = 0)
  expect_length(h$metrics$loss, 1L)
  expect_identical(dim(predict(model, c(1, 2, 3), verbose = 0)), c(3L, 1L))
})

test_that("validation_data = list(x, y) works with an R label vector", {
  set_random_seed(6)
  d <- multi_data()
  model <- keras_model_sequential(input_shape = 3) %>%
    layer_dense(3, activation = "softmax")
  model %>% compile(optimizer = "sgd", loss = "sparse_categorical_crossentropy",
                    metrics = "accuracy")
  h <- model %>% fit(d$a, d$cls, epochs = 2, verbose = 0,
                     validation_data = list(d$a, d$cls))
  expect_identical(names(h$metrics), c("accuracy", "loss", "val_accuracy", "val_loss"))
  expect_equal(h$metrics$val_loss[[2]],
               evaluate(model, d$a, d$cls, verbose = 0)$loss, tolerance = 1e-5)
  h <- model %>% fit(d$a, factor(d$cls), epochs = 1, verbose = 0,
                     validation_data = list(d$a, d$cls, rep(1, 24)))
  expect_length(h$metrics$val_loss, 1L)
  cnd <- plain_message(model %>% fit(d$a, d$cls, validation_data = list(d$a)))
  expect_true("kerasbackup_invalid_argument" %in% cnd$class)
  expect_match(cnd$message, "validation_data", fixed = TRUE)
})

test_that("lists feed several inputs and outputs; named lists match by name", {
  model <- two_in_two_out()
  d <- multi_data()
  h <- model %>% fit(list(b = d$b, a = d$a), list(cls = d$cls, reg = d$reg),
                     epochs = 1, verbose = 0, batch_size = 8,
                     validation_data = list(list(a = d$a, b = d$b),
                                            list(reg = d$reg, cls = d$cls)))
  expect_setequal(names(h$metrics),
                  c("loss", "reg_loss", "cls_loss", "cls_accuracy",
                    "val_loss", "val_reg_loss", "val_cls_loss", "val_cls_accuracy"))
  h <- model %>% fit(list(d$a, d$b), list(d$reg, d$cls), epochs = 1,
                     verbose = 0, validation_split = 0.25)
  expect_identical(h$params$steps, 1L)

  by_name <- evaluate(model, list(b = d$b, a = d$a), list(cls = d$cls, reg = d$reg), verbose = 0)
  by_position <- evaluate(model, list(d$a, d$b), list(d$reg, d$cls), verbose = 0)
  expect_equal(by_name, by_position, tolerance = 1e-6)
  p <- predict(model, list(a = d$a, b = d$b), verbose = 0)
  expect_length(p, 2L)
  expect_identical(dim(p[[1]]), c(24L, 1L))
  expect_identical(dim(p[[2]]), c(24L, 3L))
})

test_that("fit(), evaluate() and predict() take tf.data datasets", {
  model <- two_in_two_out()
  d <- multi_data()
  ds <- tensor_slices_dataset(list(list(a = d$a, b = d$b),
                                   list(reg = d$reg, cls = d$cls))) |>
    dataset_batch(8)
  h <- model %>% fit(ds, epochs = 2, verbose = 0, validation_data = ds)
  expect_identical(h$params$steps, 3L)
  expect_length(h$metrics$val_loss, 2L)
  expect_equal(h$metrics$val_loss[[2]], evaluate(model, ds, verbose = 0)$loss,
               tolerance = 1e-5)
  x_only <- tensor_slices_dataset(list(a = d$a, b = d$b)) |> dataset_batch(8)
  expect_identical(dim(predict(model, x_only, verbose = 0)[[2]]), c(24L, 3L))
})

test_that("validation_steps limits the validation batches of a dataset", {
  set_random_seed(10)
  model <- keras_model_sequential(input_shape = 3) %>% layer_dense(1)
  model %>% compile(optimizer = "sgd", loss = "mse")
  x <- rbind(matrix(0, 10, 3), matrix(100, 10, 3))
  ds <- tensor_slices_dataset(list(x, rep(0, 20))) |> dataset_batch(10)
  first <- tensor_slices_dataset(list(x[1:10, ], rep(0, 10))) |> dataset_batch(10)
  h <- model %>% fit(ds, epochs = 1, verbose = 0, validation_data = ds,
                     validation_steps = 1)
  expect_equal(h$metrics$val_loss, evaluate(model, first, verbose = 0)$loss,
               tolerance = 1e-6)
})

test_that("a dataset of inputs only reaches a custom train_step() as a tensor", {
  seen <- NULL
  model_class <- Model(
    "InputsOnly",
    initialize = function(...) {
      super$initialize(...)
      self$dense <- layer_dense(units = 1)
    },
    call = function(inputs) self$dense(inputs),
    train_step = function(data) {
      seen <<- class(data)
      list(n = op_shape(data)[[1]])
    }
  )
  model <- model_class()
  model %>% compile(optimizer = "sgd")
  ds <- tensor_slices_dataset(matrix(runif(12), 4)) |> dataset_batch(2)
  model %>% fit(ds, epochs = 1, verbose = 0)
  expect_false("list" %in% seen)
  expect_true(any(grepl("Tensor", seen)))
})
