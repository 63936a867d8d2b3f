# Finding and importing Python; install_keras().

# The pinned Python packages: inst/python/requirements.txt (Keras with
# TensorFlow), requirements-<backend>.txt for the other backends and
# requirements-remote.txt (the object-store clients for a URL backup_dir) are
# the one list (the Makefile installs from them too).
python_requirements <- function(backend = "tensorflow", remote = FALSE) {
  files <- c("requirements.txt",
             sprintf("requirements-%s.txt", setdiff(backend, "tensorflow")),
             if (remote) "requirements-remote.txt")
  lines <- unlist(lapply(files, function(file) {
    readLines(system.file("python", file, package = "kerasbackup",
                          mustWork = TRUE), warn = FALSE)
  }))
  lines <- trimws(sub("#.*$", "", lines))
  lines[nzchar(lines)]
}

# The backends install_keras() can install (each has its requirements file).
installable_backends <- c("tensorflow", "jax", "torch")

default_envname <- function() "r-keras"

.py <- new.env(parent = emptyenv())

#' Import the package's Python modules (lazily, once)
#' @noRd
py_kb <- function() {
  if (is.null(.py$kb)) {
    check_python()
    path <- system.file("python", package = "kerasbackup", mustWork = TRUE)
    .py$kb <- reticulate::import_from_path("kerasbackup", path = path)
    .py$bridge <- reticulate::import_from_path("kerasbackup.rbridge", path = path)
    # The callback's warnings inside keras3's fit() become R warnings.
    reticulate::import_from_path("kerasbackup.errors", path = path)$
      set_warning_sink(py_warning_sink)
  }
  .py$kb
}

py_bridge <- function() {
  py_kb()
  .py$bridge
}

py_keras <- function() {
  if (is.null(.py$keras)) {
    py_kb()
    .py$keras <- reticulate::import("keras")
  }
  .py$keras
}

# Whether Python has `module` (a top-level name), without importing it:
# reticulate 1.28's py_module_available() imports the module, and importing
# keras fixes its backend before use_backend() could choose one.
py_has_module <- function(module) {
  util <- reticulate::import("importlib.util")
  !is.null(util$find_spec(module))
}

check_python <- function() {
  ok <- tryCatch(py_has_module("keras") && py_has_module("numpy"),
                 error = function(e) FALSE)
  if (!ok) {
    cli::cli_abort(
      c("Python with {.pkg keras} is not available.",
        i = "Run {.run kerasbackup::install_keras()} to create the
             {.val {default_envname()}} virtualenv, then restart R.",
        i = "Or set {.envvar RETICULATE_PYTHON} to a Python that has
             {.val {python_requirements()}}."),
      class = c("kerasbackup_python_missing", "kerasbackup_error")
    )
  }
  invisible(TRUE)
}

#' Install Python, Keras and its backends for kerasbackup
#'
#' Creates (or updates) a Python virtualenv holding the pinned versions of
#' Keras, TensorFlow (CPU), NumPy and the other Python packages this package
#' is tested with, plus those of the other `backend`s asked for (JAX on the
#' CPU, PyTorch) and the object-store clients for a URL `backup_dir` (fsspec,
#' s3fs, gcsfs). The pins are in the files `requirements.txt`,
#' `requirements-<backend>.txt` and `requirements-remote.txt` of
#' `system.file("python", package = "kerasbackup")`, which the package's own
#' set-up installs from too. On load, kerasbackup uses `RETICULATE_PYTHON`
#' when it is set, and this virtualenv otherwise; [use_backend()] chooses
#' among the installed backends. NumPy is kept below 2 because reticulate 1.28 cannot convert R
#' arrays to NumPy 2.
#'
#' PyTorch is pinned exactly (`torch==2.13.0`); where pip finds no CPU-only
#' build of it (on PyPI the Linux wheel is a CUDA one), pass `pip_options =
#' "--extra-index-url https://download.pytorch.org/whl/cpu"` for the CPU
#' build.
#'
#' @param envname Name of the virtualenv. Defaults to `"r-keras"`.
#' @param python The Python used to create the virtualenv, or `NULL` to let
#'   reticulate choose one.
#' @param extra_packages More Python packages to install.
#' @param backend The Keras backends to install: one or more of
#'   `"tensorflow"`, `"jax"` and `"torch"`. TensorFlow is always installed
#'   (Keras uses it for `tf.data` on every backend).
#' @param ... Passed on to [reticulate::virtualenv_install()].
#' @returns The path of the virtualenv's Python, invisibly.
#' @export
#' @examples
#' \dontrun{
#' install_keras()
#' install_keras(backend = c("tensorflow", "jax", "torch"))
#' }
install_keras <- function(envname = "r-keras", python = NULL,
                          extra_packages = NULL,
                          backend = c("tensorflow", "jax"), ...) {
  if (!is_string(envname)) {
    abort_invalid_arg("envname", envname, "a non-empty string")
  }
  if (!(is.character(backend) && length(backend) >= 1L && !anyNA(backend) &&
        all(backend %in% installable_backends))) {
    abort_invalid_arg("backend", backend,
                      paste0("one or more of ", paste0('"', installable_backends,
                                                       '"', collapse = ", ")))
  }
  if (!reticulate::virtualenv_exists(envname)) {
    reticulate::virtualenv_create(envname, python = python)
  }
  reticulate::virtualenv_install(
    envname,
    c(python_requirements(backend, remote = TRUE), extra_packages),
    ignore_installed = FALSE,
    ...
  )
  invisible(reticulate::virtualenv_python(envname))
}
