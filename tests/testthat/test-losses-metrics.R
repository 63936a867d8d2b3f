skip_if_keras3_front_end()

# Losses and metrics: the object form (no y_true/y_pred) and the function form.

test_that("a loss called without y_true and y_pred is a loss object", {
  skip_if_no_python()
  loss <- loss_sparse_categorical_crossentropy(from_logits = TRUE)
  expect_s3_class(loss, "keras.src.losses.losses.SparseCategoricalCrossentropy")
  expect_true(loss$from_logits)
  expect_s3_class(loss_huber(delta = 2), "keras.src.losses.losses.Huber")
  expect_s3_class(loss_mean_squared_error(), "keras.src.losses.loss.Loss")
})

test_that("a loss called with y_true and y_pred computes per-sample values", {
  skip_if_no_python()
  y_true <- rbind(c(0, 1), c(1, 0))
  y_pred <- rbind(c(0, 3), c(1, 2))
  expect_equal(as.numeric(as_r(loss_mean_squared_error(y_true, y_pred))), c(2, 2))
  expect_equal(as.numeric(as_r(loss_mean_absolute_error(c(1, 2), c(1, 4)))), 1)
  expect_equal(as.numeric(as_r(loss_sparse_categorical_crossentropy(c(1, 0), rbind(c(0.5, 0.5), c(1, 0))))),
               c(log(2), 0), tolerance = 1e-6)
  # the object form computes the reduced value
  expect_equal(as.numeric(as_r(loss_mean_squared_error()(y_true, y_pred))), 2)
})

test_that("metrics have both forms too, and class-only metrics are objects", {
  skip_if_no_python()
  m <- metric_sparse_categorical_accuracy()
  expect_s3_class(m, "keras.src.metrics.accuracy_metrics.SparseCategoricalAccuracy")
  m$update_state(c(1, 0), rbind(c(0.2, 0.8), c(0.3, 0.7)))
  expect_equal(as.numeric(as_r(m$result())), 0.5)
  expect_equal(as.numeric(as_r(metric_binary_accuracy(c(1, 0), c(0.9, 0.8)))), c(1, 0))
  expect_s3_class(metric_auc(num_thresholds = 50), "keras.src.metrics.confusion_metrics.AUC")
  expect_identical(metric_auc(num_thresholds = 50)$num_thresholds, 50L)
  expect_s3_class(metric_mean(), "keras.src.metrics.reduction_metrics.Mean")
  expect_error(metric_auc(num_thresholds = 2.5), class = "kerasbackup_invalid_argument")
})

test_that("losses, metrics and R functions work in compile() and fit()", {
  skip_if_no_python()
  set_random_seed(2)
  data <- toy_data(n = 16)
  model <- keras_model_sequential(input_shape = 6) %>% layer_dense(1)
  my_mae <- structure(function(y_true, y_pred) op_mean(op_abs(op_subtract(y_true, y_pred)), axis = -1),
                      name = "my_mae")
  model %>% compile(optimizer = optimizer_sgd(0.01), loss = loss_huber(),
                    metrics = list(metric_mean_absolute_error(), metric_mean_squared_error,
                                   my_mae))
  history <- model %>% fit(data$x, data$y, epochs = 2, batch_size = 8, verbose = 0)
  expect_setequal(names(history$metrics),
                  c("loss", "mean_absolute_error", "mean_squared_error", "my_mae"))
  expect_equal(history$metrics$mean_absolute_error, history$metrics$my_mae, tolerance = 1e-5)
})

test_that("custom_metric() names an R function's values in the logs", {
  skip_if_no_python()
  set_random_seed(2)
  data <- toy_data(n = 16)
  model <- keras_model_sequential(input_shape = 6) %>% layer_dense(1)
  abs_error <- custom_metric("abs_error", function(y_true, y_pred) {
    op_mean(op_abs(op_subtract(y_true, y_pred)), axis = -1)
  })
  expect_identical(abs_error$`__name__`, "abs_error")
  model %>% compile(optimizer = optimizer_sgd(0.01), loss = "mse",
                    metrics = list(abs_error, "mae"))
  history <- model %>% fit(data$x, data$y, epochs = 2, batch_size = 8, verbose = 0)
  expect_setequal(names(history$metrics), c("loss", "abs_error", "mae"))
  expect_equal(history$metrics$abs_error, history$metrics$mae, tolerance = 1e-5)
  expect_error(custom_metric(NA_character_, identity), class = "kerasbackup_invalid_argument")
  expect_error(custom_metric("m", "mae"), class = "kerasbackup_invalid_argument")
})
