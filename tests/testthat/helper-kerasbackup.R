# Tests that need Python with keras skip without it, as on CRAN. `make test`
# sets KERASBACKUP_REQUIRE_PYTHON=true: there a missing Python is a failure.
skip_if_no_python <- function() {
  if (kerasbackup:::python_ready()) return(invisible())
  if (identical(tolower(Sys.getenv("KERASBACKUP_REQUIRE_PYTHON")), "true")) {
    stop("Python with keras is not available, and KERASBACKUP_REQUIRE_PYTHON ",
         "is true: run `make test` (or install_keras()).")
  }
  testthat::skip("Python with keras is not available")
}

plain_message <- function(expr) {
  withr::local_options(cli.unicode = FALSE, cli.num_colors = 1L)
  err <- tryCatch(expr, error = function(e) e)
  if (!inherits(err, "error")) stop("no error was raised")
  list(class = class(err), message = conditionMessage(err), cnd = err)
}

# A small regression problem as R matrices, so R -> NumPy conversion is used.
toy_data <- function(n = 40, p = 6, seed = 42) {
  set.seed(seed)
  x <- matrix(rnorm(n * p), n, p)
  y <- matrix(x %*% seq_len(p) / p + rnorm(n, sd = 0.1), n, 1)
  list(x = x, y = y)
}

toy_model <- function(seed = 1, dropout = TRUE, optimizer = NULL) {
  set_random_seed(seed)
  model <- keras_model_sequential(input_shape = 6) %>%
    layer_dense(16, activation = "relu")
  if (dropout) model <- model %>% layer_dropout(0.25)
  model <- model %>% layer_dense(1)
  optimizer <- optimizer %||% optimizer_adam(
    learning_rate_schedule_exponential_decay(0.01, decay_steps = 5,
                                             decay_rate = 0.9)
  )
  model %>% compile(optimizer = optimizer, loss = "mse", metrics = "mae")
  model
}

`%||%` <- function(x, y) if (is.null(x)) y else x

optimizer_state <- function(model) {
  lapply(model$optimizer$variables, function(v) v$numpy())
}

# Keras' Python module, for building test fixtures the R API has no wrapper for.
keras <- NULL
if (kerasbackup:::python_ready()) keras <- kerasbackup:::py_keras()

tensor_dtype_of <- function(x) kerasbackup:::tensor_dtype(x)

# Replace a function of the package for the rest of the calling test
# (testthat 3.1.6 has no local_mocked_bindings()).
local_package_binding <- function(name, value, env = parent.frame()) {
  ns <- asNamespace("kerasbackup")
  old <- get(name, envir = ns)
  unlockBinding(name, ns)
  assign(name, value, envir = ns)
  withr::defer({
    assign(name, old, envir = ns)
    lockBinding(name, ns)
  }, envir = env)
}

# Keras' cache folder for downloaded datasets.
keras_datasets_dir <- function() {
  file.path(reticulate::import("keras.src.backend.config")$keras_home(), "datasets")
}

# An interrupted fit() and its resume (test-resume.R, scripts/resume-backend.R).
interrupt_at <- function(epoch_at, batch_at) {
  new_callback_class(
    "InterruptAt",
    on_train_batch_begin = function(batch, logs = NULL) {
      if (self$model$optimizer$iterations$numpy() > 0 &&
          identical(as.integer(self$current_epoch), as.integer(epoch_at)) &&
          batch == batch_at) {
        stop("Interrupting!")
      }
    },
    on_epoch_begin = function(epoch, logs = NULL) {
      self$current_epoch <- epoch
    }
  )()
}

train <- function(backup_dir, extra = list(), save_freq = 2L, epochs = 5) {
  data <- toy_data()
  model <- toy_model()
  callbacks <- c(
    list(callback_backup_and_restore(backup_dir, save_freq = save_freq),
         callback_early_stopping(patience = 50),
         callback_reduce_lr_on_plateau(patience = 1, factor = 0.5)),
    extra
  )
  history <- model %>% fit(data$x, data$y, epochs = epochs, batch_size = 6,
                           validation_split = 0.2, shuffle = TRUE,
                           callbacks = callbacks, verbose = 0)
  list(model = model, history = history, callbacks = callbacks)
}

callback_state <- function(callbacks) {
  es <- callbacks[[2]]
  rl <- callbacks[[3]]
  list(es = list(es$wait, es$best, es$best_epoch, es$stopped_epoch),
       rl = list(rl$wait, rl$best, rl$cooldown_counter))
}

# Runs scripts/<script> in an Rscript of its own (for what is fixed once per
# process: the Keras backend, TensorFlow's devices) with this helper's path,
# `args` and an output path; returns what the script saved there.
run_script <- function(script, args = character(), env = character()) {
  out <- tempfile(fileext = ".rds")
  run <- callr::rscript(
    test_path("scripts", script),
    cmdargs = c(normalizePath(test_path("helper-kerasbackup.R")), args, out),
    env = c(callr::rcmd_safe_env(), env),
    stderr = "2>&1", fail_on_status = FALSE, show = FALSE, timeout = 900
  )
  testthat::expect_identical(run$status, 0L, info = run$stdout)
  readRDS(out)
}

# Whether a resumed run ended as the uninterrupted one, part by part.
same_training <- function(resumed, reference) {
  list(
    weights = identical(get_weights(resumed$model), get_weights(reference$model)),
    optimizer = identical(optimizer_state(resumed$model),
                          optimizer_state(reference$model)),
    history = identical(resumed$history$metrics, reference$history$metrics),
    rows = c(resumed = nrow(as.data.frame(resumed$history)),
             reference = nrow(as.data.frame(reference$history)))
  )
}

# Where keras3 is installed, kerasbackup's keras3-named functions are
# keras3's own (see R/zzz.R), and fit() is keras3's: it calls Keras'
# model.fit(), without kerasbackup's own fit() driver.
beside_keras3 <- function() identical(kerasbackup:::front_end(), "keras3")

# The tests of kerasbackup's own front end skip beside keras3.
skip_if_keras3_front_end <- function() {
  if (beside_keras3()) {
    testthat::skip(paste("tests kerasbackup's own front end; keras3 is",
                         "installed, so these functions are keras3's"))
  }
}

# Beside keras3, fit() is Keras' model.fit(): no hook of the callback sees a
# batch before the restore, so it refuses a model that would create
# variables in its first train step; kerasbackup's own fit() builds the
# model from the first batch first.
expect_unbuilt_refused <- function(expr) {
  err <- tryCatch(expr, error = identity)
  expect_s3_class(err, "kerasbackup_unbuilt_state")
  expect_match(conditionMessage(err), "must be built before fit() starts", fixed = TRUE)
  expect_match(conditionMessage(err), "call it on a batch of data first", fixed = TRUE)
}
