# Finding and importing Python; install_keras().

# The pinned Python packages: inst/python/requirements.txt is the one list
# (the Makefile installs from it too), and requirements-remote.txt the
# optional object-store clients (s3fs, gcsfs) for a URL backup_dir.
python_requirements <- function(files = c("requirements.txt",
                                          "requirements-remote.txt")) {
  lines <- unlist(lapply(files, function(file) {
    path <- system.file("python", file, package = "kerasbackup", mustWork = TRUE)
    readLines(path, warn = FALSE)
  }))
  lines <- trimws(sub("#.*$", "", lines))
  lines[nzchar(lines)]
}

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

check_python <- function() {
  ok <- tryCatch(
    reticulate::py_module_available("keras") &&
      reticulate::py_module_available("numpy"),
    error = function(e) FALSE
  )
  if (!ok) {
    cli::cli_abort(
      c("Python with {.pkg keras} is not available.",
        i = "Run {.run kerasbackup::install_keras()} to create the
             {.val {default_envname()}} virtualenv, then restart R.",
        i = "Or set {.envvar RETICULATE_PYTHON} to a Python that has
             {.val {python_requirements(\"requirements.txt\")}}."),
      class = c("kerasbackup_python_missing", "kerasbackup_error")
    )
  }
  invisible(TRUE)
}

#' Install Python, Keras and TensorFlow for kerasbackup
#'
#' Creates (or updates) a Python virtualenv holding the pinned versions of
#' keras, tensorflow-cpu, numpy and h5py that this package is tested with
#' (listed in `system.file("python", "requirements.txt", package =
#' "kerasbackup")`, the file the package's own set-up installs from), and
#' the object-store clients for a URL `backup_dir` (fsspec, s3fs, gcsfs;
#' `requirements-remote.txt` there). On load,
#' kerasbackup uses `RETICULATE_PYTHON` when it is set, and this virtualenv
#' otherwise. NumPy is kept below 2 because reticulate 1.28 cannot convert R
#' arrays to NumPy 2.
#'
#' @param envname Name of the virtualenv. Defaults to `"r-keras"`.
#' @param python The Python used to create the virtualenv, or `NULL` to let
#'   reticulate choose one.
#' @param extra_packages More Python packages to install.
#' @param ... Passed on to [reticulate::virtualenv_install()].
#' @returns The path of the virtualenv's Python, invisibly.
#' @export
#' @examples
#' \dontrun{
#' install_keras()
#' }
install_keras <- function(envname = "r-keras", python = NULL,
                          extra_packages = NULL, ...) {
  if (!is_string(envname)) {
    abort_invalid_arg("envname", envname, "a non-empty string")
  }
  if (!reticulate::virtualenv_exists(envname)) {
    reticulate::virtualenv_create(envname, python = python)
  }
  reticulate::virtualenv_install(
    envname,
    c(python_requirements(), extra_packages),
    ignore_installed = FALSE,
    ...
  )
  invisible(reticulate::virtualenv_python(envname))
}
