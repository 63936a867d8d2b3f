skip_if_keras3_front_end()

test_that("R callbacks receive 1-based epochs and batches", {
  skip_if_no_python()
  seen <- new.env()
  seen$epochs <- integer()
  seen$batches <- integer()
  recorder <- new_callback_class(
    "Recorder",
    on_epoch_begin = function(epoch, logs = NULL) {
      seen$epochs <- c(seen$epochs, epoch)
    },
    on_train_batch_end = function(batch, logs = NULL) {
      seen$batches <- c(seen$batches, batch)
    }
  )
  data <- toy_data(n = 10)
  model <- toy_model(dropout = FALSE)
  model %>% fit(data$x, data$y, epochs = 3, batch_size = 5, verbose = 0,
                callbacks = list(recorder()))
  expect_identical(as.integer(seen$epochs), 1:3)
  expect_identical(as.integer(seen$batches), rep(1:2, 3))
})

test_that("self is in scope with or without a self argument", {
  skip_if_no_python()
  got <- new.env()
  with_self <- Callback(
    "WithSelf",
    on_train_begin = function(self, logs = NULL) {
      got$a <- self$model$name
    }
  )
  without_self <- new_callback_class(
    "WithoutSelf",
    on_train_begin = function(logs = NULL) {
      got$b <- self$model$name
    }
  )
  data <- toy_data(n = 8)
  model <- toy_model(dropout = FALSE)
  model %>% fit(data$x, data$y, epochs = 1, verbose = 0,
                callbacks = list(with_self(), without_self()))
  expect_identical(got$a, model$name)
  expect_identical(got$b, model$name)
})

test_that("a named list returned by a method is merged into logs", {
  skip_if_no_python()
  adder <- new_callback_class(
    "Adder",
    on_epoch_end = function(epoch, logs = NULL) list(epoch_times_ten = epoch * 10)
  )
  data <- toy_data(n = 8)
  model <- toy_model(dropout = FALSE)
  history <- model %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                           callbacks = list(adder()))
  expect_identical(history$metrics$epoch_times_ten, c(10, 20, 30))
})

test_that("constructor arguments become fields of the instance", {
  skip_if_no_python()
  cls <- new_callback_class("WithField",
                            on_train_begin = function(logs = NULL) NULL)
  cb <- cls(limit = 3L)
  expect_identical(cb$limit, 3L)
  expect_output(print(cls), "<callback class WithField>")
})

test_that("initialize() runs as the constructor; trailing commas are accepted", {
  skip_if_no_python()
  callback_stop_at_min_loss <- Callback(
    "StopAtMinLoss",
    `__doc__` = "Stops when the loss has not improved for `patience` epochs.",
    initialize = function(patience = 0) {
      super$initialize()
      self$patience <- patience
      self$best_weights <- NULL
    },
    on_train_begin = function(logs = NULL) {
      self$wait <- 0
      self$best <- Inf
      self$stopped_epoch <- 0
    },
    on_epoch_end = function(epoch, logs = NULL) {
      if (logs$loss < self$best) {
        self$best <- logs$loss
        self$wait <- 0
        self$best_weights <- get_weights(self$model)
      } else {
        self$wait <- self$wait + 1
        if (self$wait >= self$patience) {
          self$stopped_epoch <- epoch
          self$model$stop_training <- TRUE
          set_weights(self$model, self$best_weights)
        }
      }
    },
  )
  expect_identical(names(formals(callback_stop_at_min_loss)), "patience")
  expect_output(print(callback_stop_at_min_loss), "<callback class StopAtMinLoss>")
  expect_identical(callback_stop_at_min_loss()$patience, 0)
  expect_identical(callback_stop_at_min_loss(patience = 2)$patience, 2)
  expect_null(callback_stop_at_min_loss()$best_weights)
  expect_match(callback_stop_at_min_loss()$`__doc__`, "patience")

  # A learning rate so large that the loss soon grows: training stops early.
  data <- toy_data(n = 16)
  model <- toy_model(dropout = FALSE, optimizer = optimizer_sgd(0.6))
  cb <- callback_stop_at_min_loss(patience = 1)
  history <- model %>% fit(data$x, data$y, epochs = 20, batch_size = 16,
                           verbose = 0, callbacks = list(cb))
  epochs_run <- length(history$metrics$loss)
  expect_lt(epochs_run, 20)
  expect_identical(cb$stopped_epoch, epochs_run)  # 1-based, as R sees it
  expect_identical(get_weights(model), cb$best_weights)
})

test_that("callbacks keep private state and reach self$model", {
  skip_if_no_python()
  recorder <- Callback(
    "LossRecorder",
    initialize = function(every = 1L) {
      super$initialize()
      self$every <- every
      private$losses <- numeric()
    },
    on_epoch_end = function(epoch, logs = NULL) {
      if (epoch %% self$every == 0) private$losses <- c(private$losses, logs$loss)
      private$lr <- as.numeric(self$model$optimizer$learning_rate$numpy())
    },
    losses = function() private$losses,
    last_lr = function() private$lr
  )
  data <- toy_data(n = 16)
  model <- toy_model(dropout = FALSE, optimizer = optimizer_sgd(0.01))
  a <- recorder(every = 2L)
  b <- recorder()
  history <- model %>% fit(data$x, data$y, epochs = 4, batch_size = 8,
                           verbose = 0, callbacks = list(a, b))
  expect_identical(b$losses(), history$metrics$loss)
  expect_identical(a$losses(), history$metrics$loss[c(2, 4)])
  expect_equal(a$last_lr(), 0.01, tolerance = 1e-7)
})

test_that("a class without initialize() refuses unnamed constructor arguments", {
  skip_if_no_python()
  cls <- Callback("Plain", on_train_begin = function(logs = NULL) NULL)
  err <- plain_message(cls(3))
  expect_true("kerasbackup_invalid_argument" %in% err$class)
})
