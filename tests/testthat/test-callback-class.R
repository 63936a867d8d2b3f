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
