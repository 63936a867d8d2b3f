# The callback in a plain model.fit(): keras3's fit() beside keras3 (it calls
# model.fit()), model$fit() on kerasbackup's own front end.

plain_fit <- function(model, ...) {
  if (beside_keras3()) {
    fit(model, ..., verbose = 0)
  } else {
    model$fit(..., verbose = 0L)
  }
}

weights_of <- function(model) {
  c(lapply(model$weights, function(v) v$numpy()), optimizer_state(model))
}

# Stops fit() after `n` batches in all (an R error inside a callback).
stop_after <- function(n) {
  seen <- 0
  keras$callbacks$LambdaCallback(on_train_batch_end = function(batch, logs) {
    seen <<- seen + 1
    if (seen == n) stop("interrupted on purpose")
  })
}

test_that("a plain fit() with the callback resumes bit-identically, and is unchanged without an interruption", {
  skip_if_no_python()
  d <- toy_data(n = 64)
  args <- list(x = d$x, y = d$y, epochs = 5L, batch_size = 8L,
               shuffle = TRUE, validation_split = 0.25)
  reference <- toy_model()
  h0 <- do.call(plain_fit, c(list(reference), args))
  with_cb <- toy_model()
  h1 <- do.call(plain_fit, c(list(with_cb), args, list(callbacks = list(
    callback_backup_and_restore(withr::local_tempfile(), save_freq = 1L)))))
  expect_identical(weights_of(with_cb), weights_of(reference))

  dir <- withr::local_tempfile()
  resumed <- toy_model()
  # 6 batches an epoch: the 20th is epoch 4, batch 2.
  err <- tryCatch(do.call(plain_fit, c(list(resumed), args, list(callbacks = list(
    callback_backup_and_restore(dir, save_freq = 1L), stop_after(20))))),
    error = function(e) e)
  expect_match(conditionMessage(err), "interrupted on purpose")
  warned <- character()
  withCallingHandlers(
    do.call(plain_fit, c(list(resumed), args, list(
      callbacks = list(callback_backup_and_restore(dir, save_freq = 1L))))),
    warning = function(w) {
      warned <<- c(warned, class(w))
      invokeRestart("muffleWarning")
    })
  expect_false("kerasbackup_inexact_resume" %in% warned)
  expect_identical(weights_of(resumed), weights_of(reference))
  expect_identical(as.numeric(resumed$optimizer$iterations$numpy()), 30)
})

test_that("a resume that cannot be exact says so once, as a classed R warning", {
  skip_if_no_python()
  d <- toy_data(n = 64)
  tf_data <- reticulate::import("tensorflow")$data
  ds <- tf_data$Dataset$from_tensor_slices(reticulate::tuple(
    reticulate::np_array(d$x, "float32"), reticulate::np_array(d$y, "float32")))$
    shuffle(64L)$batch(8L)
  dir <- withr::local_tempfile()
  model <- toy_model()
  err <- tryCatch(plain_fit(model, ds, epochs = 3L, callbacks = list(
    callback_backup_and_restore(dir, save_freq = 1L), stop_after(11))),
    error = function(e) e)
  expect_match(conditionMessage(err), "interrupted on purpose")
  warned <- list()
  withCallingHandlers(
    plain_fit(model, ds, epochs = 3L, callbacks = list(
      callback_backup_and_restore(dir, save_freq = 1L))),
    warning = function(w) {
      warned[[length(warned) + 1]] <<- w
      invokeRestart("muffleWarning")
    })
  ours <- Filter(function(w) inherits(w, "kerasbackup_inexact_resume"), warned)
  expect_length(ours, 1)
  expect_true(all(c("kerasbackup_resume_warning", "kerasbackup_warning") %in%
                    class(ours[[1]])))
  expect_match(conditionMessage(ours[[1]]), "Dataset", fixed = TRUE)
})
