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

# The keras-api tests' name for the same check (lost in the merge into main).
require_python <- function() skip_if_no_python()

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
