# library(kerasbackup) loads neither reticulate (which imports the Matrix
# package, most of the load time) nor Python: the r-keras virtualenv is
# chosen when reticulate loads, before Python can start, and `tf`, `keras`
# and `r_to_py` are promises that load reticulate on first use.
.onLoad <- function(libname, pkgname) {
  if (isNamespaceLoaded("reticulate")) {
    use_default_python()
  } else {
    setHook(packageEvent("reticulate", "onLoad"), reticulate_loaded_hook)
  }
  ns <- topenv()
  rm("tf", "keras", "r_to_py", envir = ns)
  # The `tf` and `keras` modules keras3 code uses, imported on first use.
  delayedAssign("tf", reticulate::import("tensorflow", delay_load = TRUE),
                assign.env = ns)
  delayedAssign("keras", reticulate::import("keras", delay_load = TRUE),
                assign.env = ns)
  delayedAssign("r_to_py", reticulate::r_to_py, assign.env = ns)
  if (!nzchar(Sys.getenv("TF_CPP_MIN_LOG_LEVEL"))) {
    # TensorFlow's C++ start-up chatter would drown the R output.
    Sys.setenv(TF_CPP_MIN_LOG_LEVEL = "2")
  }
  invisible()
}

.onUnload <- function(libpath) {
  # A reloaded kerasbackup sets its own hook.
  hook <- packageEvent("reticulate", "onLoad")
  kept <- Filter(function(f) !identical(f, reticulate_loaded_hook),
                 getHook(hook))
  setHook(hook, NULL, "replace")
  for (f in kept) setHook(hook, f)
}

reticulate_loaded_hook <- function(pkgname, pkgpath) use_default_python()

# Unless RETICULATE_PYTHON says otherwise or Python is already running, use
# the r-keras virtualenv install_keras() makes.
use_default_python <- function() {
  if (!nzchar(Sys.getenv("RETICULATE_PYTHON")) &&
      !reticulate::py_available(initialize = FALSE)) {
    env <- default_envname()
    if (reticulate::virtualenv_exists(env)) {
      try(reticulate::use_virtualenv(env, required = FALSE), silent = TRUE)
    }
  }
  invisible()
}
