# Python is found here but imported lazily (see python.R), so that
# library(kerasbackup) stays fast and works without Python.
.onLoad <- function(libname, pkgname) {
  if (!nzchar(Sys.getenv("RETICULATE_PYTHON")) &&
      !reticulate::py_available(initialize = FALSE)) {
    env <- default_envname()
    if (reticulate::virtualenv_exists(env)) {
      try(reticulate::use_virtualenv(env, required = FALSE), silent = TRUE)
    }
  }
  # The `tf` and `keras` modules keras3 code uses, imported on first use.
  tf <<- reticulate::import("tensorflow", delay_load = TRUE)
  keras <<- reticulate::import("keras", delay_load = TRUE)
  if (!nzchar(Sys.getenv("TF_CPP_MIN_LOG_LEVEL"))) {
    # TensorFlow's C++ start-up chatter would drown the R output.
    Sys.setenv(TF_CPP_MIN_LOG_LEVEL = "2")
  }
  invisible()
}
