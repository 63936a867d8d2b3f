skip_if_keras3_front_end()

# Metrics, losses, learning-rate schedules and constraints defined in R.

# Largest absolute error seen since the last reset.
metric_max_abs_error <- Metric(
  "MaxAbsError",
  initialize = function(name = "max_abs_error", ...) {
    super$initialize(name = name, ...)
    self$worst <- self$add_variable(shape = shape(), initializer = "zeros",
                                    name = "worst")
  },
  update_state = function(y_true, y_pred, sample_weight = NULL) {
    err <- op_max(op_abs(op_subtract(op_cast(y_true, "float32"), y_pred)))
    self$worst$assign(op_maximum(self$worst, err))
  },
  result = function() self$worst$value,
  reset_state = function() self$worst$assign(0)
)

loss_abs <- Loss(
  "AbsoluteError",
  call = function(y_true, y_pred) {
    op_mean(op_abs(op_subtract(y_true, y_pred)), axis = -1)
  }
)

test_that("an R Metric() accumulates over batches, resets, and is reported by fit()", {
  skip_if_no_python()
  expect_identical(new_metric_class, Metric)
  expect_output(print(metric_max_abs_error), "<metric class MaxAbsError>")
  m <- metric_max_abs_error()
  expect_identical(m$name, "max_abs_error")
  m$update_state(c(1, 2), c(1.5, 2))
  m$update_state(c(0, 0), c(-0.25, 0))
  expect_equal(as.numeric(m$result()$numpy()), 0.5)
  m$reset_state()
  expect_equal(as.numeric(m$result()$numpy()), 0)
  expect_identical(metric_max_abs_error(name = "mae_max")$name, "mae_max")

  set_random_seed(1)
  model <- keras_model_sequential(input_shape = 6) %>% layer_dense(1)
  model %>% compile(optimizer = optimizer_sgd(0.01), loss = "mse",
                    metrics = list(metric_max_abs_error()))
  data <- toy_data(n = 32)
  history <- model %>% fit(data$x, data$y, epochs = 2, batch_size = 8,
                           verbose = 0)
  expect_identical(names(history$metrics), c("loss", "max_abs_error"))
  # Evaluated with fixed weights, the metric is the largest error over all
  # batches.
  result <- model %>% evaluate(data$x, data$y, batch_size = 8)
  worst <- max(abs(predict(model, data$x) - data$y))
  expect_equal(unname(result[["max_abs_error"]]), worst, tolerance = 1e-5)
})

test_that("an R Loss() is applied per sample and reduced by Keras", {
  skip_if_no_python()
  expect_identical(new_loss_class, Loss)
  loss <- loss_abs(name = "abs")
  expect_identical(loss$name, "abs")
  y_true <- matrix(c(0, 1, 2, 3), 2)
  y_pred <- matrix(c(1, 1, 2, 5), 2)
  expect_equal(as.numeric(loss(y_true, y_pred)$numpy()), mean(c(0.5, 1)))
  weighted <- loss(y_true, y_pred, sample_weight = c(1, 0))
  expect_equal(as.numeric(weighted$numpy()), 0.25)

  set_random_seed(1)
  model <- keras_model_sequential(input_shape = 6) %>% layer_dense(1)
  model %>% compile(optimizer = optimizer_sgd(0.01), loss = loss_abs())
  data <- toy_data(n = 16)
  model %>% fit(data$x, data$y, epochs = 1, batch_size = 8, verbose = 0)
  result <- model %>% evaluate(data$x, data$y, batch_size = 16)
  expect_equal(unname(result[["loss"]]),
               mean(abs(predict(model, data$x) - data$y)), tolerance = 1e-5)
})

test_that("an R LearningRateSchedule() sets the learning rate at each step", {
  skip_if_no_python()
  schedule_halving <- LearningRateSchedule(
    "Halving",
    initialize = function(initial = 0.1, every = 2) {
      self$initial <- initial
      self$every <- every
    },
    call = function(step) {
      op_multiply(self$initial, op_power(0.5, op_floor(op_divide(step, self$every))))
    },
    get_config = function() list(initial = self$initial, every = self$every)
  )
  expect_identical(new_learning_rate_schedule_class, LearningRateSchedule)
  schedule <- schedule_halving(0.08, every = 3)
  rates <- vapply(0:7, function(s) as.numeric(schedule(s)$numpy()), 1)
  expect_equal(rates, 0.08 * 0.5^floor(0:7 / 3), tolerance = 1e-7)
  expect_identical(schedule$get_config(), list(initial = 0.08, every = 3))

  set_random_seed(1)
  model <- keras_model_sequential(input_shape = 6) %>% layer_dense(1)
  model %>% compile(optimizer = optimizer_sgd(schedule), loss = "mse")
  data <- toy_data(n = 40)
  model %>% fit(data$x, data$y, epochs = 1, batch_size = 8, verbose = 0)
  expect_identical(as.integer(model$optimizer$iterations$numpy()), 5L)
  expect_equal(as.numeric(model$optimizer$learning_rate$numpy()),
               0.08 * 0.5^floor(5 / 3), tolerance = 1e-7)
})

test_that("an R Constraint() projects weights after each step", {
  skip_if_no_python()
  constraint_nonneg <- Constraint(
    "NonNegative",
    call = function(w) op_relu(w),
    get_config = function() list()
  )
  expect_output(print(constraint_nonneg), "<constraint class NonNegative>")
  w <- constraint_nonneg()(matrix(c(-1, 2, -3, 4), 2))
  expect_identical(as.array(w$numpy()), matrix(c(0, 2, 0, 4), 2),
                   ignore_attr = TRUE)

  set_random_seed(4)
  model <- keras_model_sequential(input_shape = 6) %>%
    layer_dense(4, kernel_constraint = constraint_nonneg()) %>%
    layer_dense(1)
  expect_true(any(get_weights(model)[[1]] < 0))  # before any step
  model %>% compile(optimizer = optimizer_sgd(0.01), loss = "mse")
  data <- toy_data(n = 16)
  model %>% fit(data$x, data$y, epochs = 1, batch_size = 8, verbose = 0)
  expect_true(all(get_weights(model)[[1]] >= 0))
  expect_true(any(get_weights(model)[[3]] < 0))  # unconstrained layer
})
