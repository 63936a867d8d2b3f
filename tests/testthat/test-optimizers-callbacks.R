skip_if_keras3_front_end()

# Optimizers, learning-rate schedules and callbacks.

test_that("optimizers take keras3's arguments", {
  skip_if_no_python()
  opt <- optimizer_rmsprop(learning_rate = 0.01, rho = 0.8)
  expect_s3_class(opt, "keras.src.optimizers.rmsprop.RMSprop")
  expect_equal(as.numeric(as_r(opt$learning_rate)), 0.01, tolerance = 1e-7)
  expect_s3_class(optimizer_adam_w(weight_decay = 0.01), "keras.src.optimizers.adamw.AdamW")
  expect_s3_class(optimizer_sgd(momentum = 0.9, nesterov = TRUE), "keras.src.optimizers.sgd.SGD")
  expect_identical(optimizer_adam(gradient_accumulation_steps = 2)$gradient_accumulation_steps, 2L)
  expect_s3_class(optimizer_loss_scale(optimizer_sgd()),
                  "keras.src.optimizers.loss_scale_optimizer.LossScaleOptimizer")
})

test_that("learning-rate schedules compute rates and drive optimizers", {
  skip_if_no_python()
  sched <- learning_rate_schedule_exponential_decay(0.1, decay_steps = 10, decay_rate = 0.5)
  expect_equal(as.numeric(as_r(sched(10))), 0.05, tolerance = 1e-6)
  expect_identical(sched$decay_steps, 10L)
  piece <- learning_rate_schedule_piecewise_constant_decay(boundaries = c(5, 10),
                                                           values = c(1, 0.5, 0.1))
  expect_equal(as.numeric(as_r(piece(7))), 0.5)
  cosine <- learning_rate_schedule_cosine_decay(1, decay_steps = 100)
  expect_equal(as.numeric(as_r(cosine(100))), 0, tolerance = 1e-6)
  opt <- optimizer_adam(learning_rate = sched)
  expect_s3_class(opt$`_learning_rate`,
                  "keras.src.optimizers.schedules.learning_rate_schedule.ExponentialDecay")
  expect_error(learning_rate_schedule_exponential_decay(0.1, decay_steps = 1.5, decay_rate = 0.5),
               class = "kerasbackup_invalid_argument")
})

test_that("callbacks take integers, paths and 1-based R hooks", {
  skip_if_no_python()
  es <- callback_early_stopping(patience = 3, min_delta = 0.001)
  expect_identical(es$patience, 3L)
  expect_equal(es$min_delta, 0.001)
  path <- "~/kerasbackup-test.weights.h5"
  ckpt <- callback_model_checkpoint(path, save_weights_only = TRUE, save_freq = 2)
  expect_identical(ckpt$filepath, path.expand(path))
  expect_identical(ckpt$save_freq, 2L)
  expect_s3_class(callback_csv_logger(tempfile()), "keras.src.callbacks.csv_logger.CSVLogger")
  expect_s3_class(callback_terminate_on_nan(), "keras.src.callbacks.terminate_on_nan.TerminateOnNaN")

  seen <- new.env()
  seen$epochs <- integer()
  seen$rates <- numeric()
  set_random_seed(1)
  data <- toy_data(n = 8)
  model <- keras_model_sequential(input_shape = 6) %>% layer_dense(1)
  model %>% compile(optimizer = optimizer_sgd(0.1), loss = "mse")
  model %>% fit(
    data$x, data$y, epochs = 3, batch_size = 8, verbose = 0,
    callbacks = list(
      callback_lambda(on_epoch_begin = function(epoch, logs) {
        seen$epochs <- c(seen$epochs, epoch)
      }),
      callback_learning_rate_scheduler(function(epoch, lr) {
        seen$rates <- c(seen$rates, lr)
        lr / 2
      })
    )
  )
  expect_identical(as.integer(seen$epochs), 1:3)
  expect_equal(seen$rates, c(0.1, 0.05, 0.025), tolerance = 1e-6)
})
