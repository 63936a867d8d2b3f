# Two front ends, chosen when the namespace loads:
#
# * keras3 is installed: kerasbackup adds only its callback and its own
#   functions. Every other exported name is bound to keras3's object (or
#   tensorflow's or tfdatasets', for the names those packages own), so that
#   library() reports no masking (R skips identical objects), and kerasbackup
#   registers no S3 method, reticulate hook or Python setting of its own:
#   keras3 behaves exactly as it does without kerasbackup.
# * keras3 is absent: kerasbackup's own keras3-compatible front end, with its
#   S3 methods (R/s3-register.R). library(kerasbackup) then loads neither
#   reticulate (which imports the Matrix package, most of the load time) nor
#   Python: the r-keras virtualenv is chosen when reticulate loads, and
#   `tf`, `keras` and `r_to_py` are promises that load reticulate on first
#   use.
.onLoad <- function(libname, pkgname) {
  ns <- topenv()
  if (requireNamespace("keras3", quietly = TRUE)) {
    .front_end$name <- "keras3"
    bind_keras3_front_end(ns, parseNamespaceFile(pkgname, libname)$exports)
    register_class_filter()  # keras3 has loaded reticulate
  } else {
    .front_end$name <- "kerasbackup"
    use_own_front_end(ns)
  }
  invisible()
}

.front_end <- new.env(parent = emptyenv())

# "keras3" or "kerasbackup": whose functions the keras3 names are.
front_end <- function() .front_end$name

# The names kerasbackup provides even beside keras3.
own_exports <- c("callback_backup_and_restore")

# Namespace bindings may still change here: R processes the exports and
# seals the namespace after .onLoad.
bind_keras3_front_end <- function(ns, exports) {
  todo <- setdiff(exports, own_exports)
  for (pkg in c("keras3", "tensorflow", "tfdatasets")) {
    if (!requireNamespace(pkg, quietly = TRUE)) next
    theirs <- intersect(todo, getNamespaceExports(pkg))
    for (name in theirs) {
      if (exists(name, envir = ns, inherits = FALSE) &&
          bindingIsActive(name, ns)) next
      assign(name, getExportedValue(pkg, name), envir = ns)
    }
    todo <- setdiff(todo, theirs)
  }
  # S3 dispatch looks in the calling environment first, so code evaluated in
  # this namespace (tests, our helpers) would still find the front end's
  # methods for keras3's classes: they go.
  methods <- front_end_methods[, 3]
  named_as_methods <- methods == paste0(sub("^.*::", "", front_end_methods[, 1]),
                                        ".", front_end_methods[, 2])
  rm(list = intersect(methods[named_as_methods], names(ns)), envir = ns)
}

use_own_front_end <- function(ns) {
  register_front_end_methods(ns)
  if (isNamespaceLoaded("reticulate")) {
    reticulate_loaded_hook()
  } else {
    setHook(packageEvent("reticulate", "onLoad"), reticulate_loaded_hook)
  }
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
}

.onUnload <- function(libpath) {
  # A reloaded kerasbackup sets its own hook.
  hook <- packageEvent("reticulate", "onLoad")
  kept <- Filter(function(f) !identical(f, reticulate_loaded_hook),
                 getHook(hook))
  setHook(hook, NULL, "replace")
  for (f in kept) setHook(hook, f)
}

reticulate_loaded_hook <- function(...) {
  register_front_end_methods(topenv(), reticulate = TRUE)
  register_class_filter()
  use_default_python()
}

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
