# An interrupted and resumed fit() ends bit-identical to an uninterrupted one.

test_that("an R stop() mid-epoch, resumed, ends bit-identical (save_freq = 2)", {
  skip_if_no_python()
  reference <- train(withr::local_tempdir())

  dir <- file.path(withr::local_tempdir(), "backup")
  expect_error(train(dir, list(interrupt_at(3, 4))),
               class = "python.builtin.RuntimeError")
  info <- backup_info(dir)
  expect_identical(nrow(info), 1L)
  expect_true(info$verified)
  expect_identical(info$epoch, 3L)  # resumes in epoch 3 ...
  expect_identical(info$batch, 2L)  # ... after its second batch

  resumed <- train(dir)
  expect_identical(get_weights(resumed$model), get_weights(reference$model))
  expect_identical(optimizer_state(resumed$model), optimizer_state(reference$model))
  expect_identical(resumed$history$metrics, reference$history$metrics)
  expect_identical(nrow(as.data.frame(resumed$history)),
                   nrow(as.data.frame(reference$history)))
  expect_identical(callback_state(resumed$callbacks),
                   callback_state(reference$callbacks))
  expect_false(dir.exists(dir))
})

test_that("two interruptions in the same epoch, at save_freq = 'epoch' too", {
  skip_if_no_python()
  for (freq in list(1L, "epoch")) {
    reference <- train(withr::local_tempdir(), save_freq = freq)
    dir <- file.path(withr::local_tempdir(), "backup")
    expect_error(train(dir, list(interrupt_at(2, 2)), save_freq = freq),
                 class = "python.builtin.RuntimeError")
    expect_error(train(dir, list(interrupt_at(2, 4)), save_freq = freq),
                 class = "python.builtin.RuntimeError")
    resumed <- train(dir, save_freq = freq)
    expect_identical(get_weights(resumed$model), get_weights(reference$model))
    expect_identical(optimizer_state(resumed$model),
                     optimizer_state(reference$model))
    expect_identical(resumed$history$metrics, reference$history$metrics)
    expect_identical(callback_state(resumed$callbacks),
                     callback_state(reference$callbacks))
  }
})

test_that("a changed setup is refused with every difference listed", {
  skip_if_no_python()
  data <- toy_data()
  dir <- file.path(withr::local_tempdir(), "backup")
  stopper <- interrupt_at(2, 1)
  model <- toy_model()
  expect_error(
    model %>% fit(data$x, data$y, epochs = 3, batch_size = 6, verbose = 0,
                  callbacks = list(callback_backup_and_restore(dir), stopper)),
    class = "python.builtin.RuntimeError"
  )
  model <- toy_model(optimizer = optimizer_sgd())
  err <- tryCatch(
    model %>% fit(data$x, data$y, epochs = 3, batch_size = 8, verbose = 0,
                  callbacks = list(callback_backup_and_restore(dir))),
    error = function(e) e
  )
  expect_s3_class(err, "kerasbackup_fingerprint_mismatch")
  # Keras' model.fit() (keras3's fit()) shows the callback the steps per
  # epoch, not the batch size; kerasbackup's own fit() passes it on.
  expect_match(conditionMessage(err),
               if (beside_keras3()) "steps per epoch: 7 -> 5" else "batch size: 6 -> 8",
               fixed = TRUE)
  expect_match(conditionMessage(err), "optimizer: Adam -> SGD", fixed = TRUE)
  # The checkpoint is untouched and can still be resumed as it was.
  expect_true(backup_info(dir)$verified)

  # Training longer is a legitimate resume; allow_changes permits the rest.
  model <- toy_model()
  history <- model %>% fit(data$x, data$y, epochs = 5, batch_size = 6,
                           verbose = 0,
                           callbacks = list(callback_backup_and_restore(dir)))
  df <- as.data.frame(history)
  expect_identical(df$epoch[df$metric == "loss"], 1:5)
  expect_false(anyNA(df$value))
})

test_that("a second live fit on the same backup_dir is refused, naming the holder", {
  skip_if_no_python()
  dir <- file.path(withr::local_tempdir(), "backup")
  holder <- kerasbackup:::py_kb()$CheckpointStore(dir)$open()
  on.exit(holder$close(), add = TRUE)
  data <- toy_data()
  model <- toy_model()
  err <- tryCatch(
    model %>% fit(data$x, data$y, epochs = 1, verbose = 0,
                  callbacks = list(callback_backup_and_restore(dir))),
    error = function(e) e
  )
  expect_s3_class(err, "kerasbackup_locked")
  expect_s3_class(err, "kerasbackup_error")
  expect_match(conditionMessage(err), paste0("pid ", Sys.getpid()), fixed = TRUE)
})

test_that("a non-kerasbackup directory is refused, and left alone", {
  skip_if_no_python()
  dir <- withr::local_tempdir()
  writeLines("precious", file.path(dir, "notes.txt"))
  data <- toy_data()
  model <- toy_model()
  expect_error(
    model %>% fit(data$x, data$y, epochs = 1, verbose = 0,
                  callbacks = list(callback_backup_and_restore(dir))),
    class = "kerasbackup_backup_dir_error"
  )
  expect_identical(readLines(file.path(dir, "notes.txt")), "precious")
})

test_that("backup_info() describes a directory without a model", {
  skip_if_no_python()
  expect_identical(nrow(backup_info(tempfile())), 0L)
  dir <- file.path(withr::local_tempdir(), "backup")
  data <- toy_data()
  model <- toy_model()
  model %>% fit(data$x, data$y, epochs = 2, verbose = 0,
                callbacks = list(callback_backup_and_restore(
                  dir, delete_checkpoint = FALSE, double_checkpoint = TRUE)))
  info <- backup_info(dir)
  expect_identical(nrow(info), 2L)
  expect_identical(info$epoch, c(2L, 3L))
  expect_identical(info$batch, c(0L, 0L))
  expect_true(all(info$verified))
  expect_true(all(is.na(info$problem)))
  expect_true(all(info$size_bytes > 0))
  expect_s3_class(info$created, "POSIXct")
})

test_that("a model still unbuilt when fit() starts is built from the first batch, then restored", {
  skip_if_no_python()
  data <- toy_data()
  unbuilt <- function() {
    set_random_seed(3)
    model <- keras_model_sequential() %>% layer_dense(4) %>% layer_dense(1)
    model %>% compile(optimizer = optimizer_adam(), loss = "mse")
    model
  }
  run <- function(dir, extra = list()) {
    model <- unbuilt()
    expect_false(model$built)
    model %>% fit(data$x, data$y, epochs = 3, batch_size = 8, verbose = 0,
                  callbacks = c(list(callback_backup_and_restore(dir)), extra))
    model
  }
  if (beside_keras3()) {
    expect_unbuilt_refused(run(withr::local_tempdir()))
  } else {
    reference <- run(withr::local_tempdir())
    dir <- file.path(withr::local_tempdir(), "backup")
    expect_error(run(dir, list(interrupt_at(2, 3))),
                 class = "python.builtin.RuntimeError")
    resumed <- run(dir)
    expect_identical(get_weights(resumed), get_weights(reference))
  }
})

test_that("an R callback with get_state()/set_state() has its state restored", {
  skip_if_no_python()
  counter <- new_callback_class(
    "BatchCounter",
    on_train_begin = function(logs = NULL) self$count <- 0L,
    on_train_batch_end = function(batch, logs = NULL) {
      self$count <- self$count + 1L
    },
    get_state = function() list(count = self$count),
    set_state = function(state) self$count <- as.integer(state$count)
  )
  data <- toy_data()
  run <- function(dir, extra = list()) {
    cb <- counter()
    model <- toy_model()
    model %>% fit(data$x, data$y, epochs = 3, batch_size = 8, verbose = 0,
                  callbacks = c(list(callback_backup_and_restore(dir, save_freq = 2),
                                     cb), extra))
    cb$count
  }
  expect_identical(run(withr::local_tempdir()), 15L)
  dir <- file.path(withr::local_tempdir(), "backup")
  expect_error(run(dir, list(interrupt_at(3, 2))),
               class = "python.builtin.RuntimeError")
  expect_identical(run(dir), 15L)
})

test_that("a nested fit() on the same backup_dir is refused; the outer one completes", {
  skip_if_no_python()
  data <- toy_data()
  dir <- file.path(withr::local_tempdir(), "backup")
  for (same in c(FALSE, TRUE)) {
    outer <- callback_backup_and_restore(dir, save_freq = 2)
    inner_model <- toy_model(seed = 3)
    refused <- list()
    nest <- new_callback_class(
      "Nest",
      on_epoch_end = function(epoch, logs = NULL) {
        if (epoch == 1) {
          inner <- if (same) outer else callback_backup_and_restore(dir)
          refused[[length(refused) + 1L]] <<- tryCatch(
            inner_model %>% fit(data$x, data$y, epochs = 1, verbose = 0,
                                callbacks = list(inner)),
            error = function(e) e)
        }
        NULL  # a returned list would be merged into the logs
      }
    )
    model <- toy_model()
    history <- model %>% fit(data$x, data$y, epochs = 3, batch_size = 8,
                             verbose = 0, callbacks = list(outer, nest()))
    expect_length(refused, 1)
    expect_s3_class(refused[[1]], "kerasbackup_locked")
    expect_s3_class(refused[[1]], "kerasbackup_error")
    expect_match(conditionMessage(refused[[1]]), "is in use", fixed = TRUE)
    expect_match(conditionMessage(refused[[1]]), paste0("pid ", Sys.getpid(), " on host "),
                 fixed = TRUE)
    expect_length(history$metrics$loss, 3)
    expect_identical(as.integer(model$optimizer$iterations$numpy()), 3L * 5L)
    expect_identical(as.integer(inner_model$optimizer$iterations$numpy()), 0L)
    expect_false(dir.exists(dir))
  }
})

test_that("an error in a callback listed after ours at epoch end keeps the save that was due", {
  skip_if_no_python()
  data <- toy_data()
  counter <- new.env()
  count_batches <- new_callback_class(
    "CountBatches",
    on_train_begin = function(logs = NULL) counter$n <- 0L,
    on_train_batch_end = function(batch, logs = NULL) counter$n <- counter$n + 1L
  )
  raise_at_end_of <- function(at) new_callback_class(
    "RaiseAtEpochEnd",
    on_epoch_end = function(epoch, logs = NULL) if (epoch == at) stop("after the epoch")
  )()
  run <- function(dir, at = 0, double = FALSE) {
    model <- toy_model()
    model %>% fit(data$x, data$y, epochs = 4, batch_size = 8, verbose = 0,
                  callbacks = list(count_batches(),
                                   callback_backup_and_restore(dir, double_checkpoint = double),
                                   raise_at_end_of(at)))
    model
  }
  reference <- run(withr::local_tempdir())
  for (double in c(FALSE, TRUE)) {
    dir <- file.path(withr::local_tempdir(), "backup")
    expect_error(run(dir, at = 2, double = double),
                 class = "python.builtin.RuntimeError")
    info <- backup_info(dir)
    # The end of epoch 2 was saved: the resume starts at epoch 3.
    expect_identical(info$epoch, if (double) c(2L, 3L) else 3L)
    expect_true(all(info$verified))
    resumed <- run(dir, double = double)
    expect_identical(counter$n, 2L * 5L)  # epochs 3 and 4 only
    expect_identical(get_weights(resumed), get_weights(reference))
  }
})
