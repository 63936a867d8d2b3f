# Choosing the Keras backend before Keras is imported.

keras_backends <- c("tensorflow", "jax", "torch", "numpy", "openvino")

#' Choose the Keras backend
#'
#' Sets `KERAS_BACKEND` for the Keras that kerasbackup imports (lazily, on
#' first use), so call it before anything touches Keras (functions that do
#' not, such as [backup_info()], may come first). Exact resumes are tested
#' with `"tensorflow"`, `"jax"` and `"torch"` ([install_keras()] installs
#' them); the backend must be installed in the same Python.
#' Asking for another backend once Keras has been imported with one is an
#' error of class `kerasbackup_backend_locked` (restart R to switch), and a
#' backend whose Python package is missing one of class
#' `kerasbackup_backend_unavailable`.
#'
#' @param backend `"tensorflow"`, `"jax"`, `"torch"`, `"numpy"` or
#'   `"openvino"`.
#' @param gpu `FALSE` hides the GPUs from the backend; `NA` or `TRUE` leaves
#'   them visible.
#' @returns The backend, invisibly.
#' @family config
#' @export
#' @examples
#' \dontrun{
#' library(kerasbackup)
#' use_backend("tensorflow")
#' }
use_backend <- function(backend, gpu = NA) {
  if (!(is_string(backend) && backend %in% keras_backends)) {
    abort_invalid_arg("backend", backend,
                      paste0("one of ", paste0('"', keras_backends, '"', collapse = ", ")))
  }
  if (!(is.logical(gpu) && length(gpu) == 1L)) {
    abort_invalid_arg("gpu", gpu, "TRUE, FALSE or NA")
  }
  current <- imported_keras_backend()
  if (!is.null(current)) {
    if (identical(current, backend)) return(invisible(backend))
    cli::cli_abort(
      c("Keras is already imported with the {.val {current}} backend.",
        i = "Call {.code use_backend({.val {backend}})} in a new R session,
             before any Keras function."),
      class = c("kerasbackup_backend_locked", "kerasbackup_backend_error",
                "kerasbackup_error"),
      backend = backend, current = current
    )
  }
  module <- switch(backend, tensorflow = "tensorflow", jax = "jax",
                   torch = "torch", numpy = "numpy", openvino = "openvino")
  if (!isTRUE(tryCatch(py_has_module(module), error = function(e) FALSE))) {
    cli::cli_abort(
      c("The {.val {backend}} backend needs the Python package {.pkg {module}},
         which is not installed in {.path {python_path()}}.",
        i = "Install it in that Python, or use {.code use_backend(\"tensorflow\")}."),
      class = c("kerasbackup_backend_unavailable", "kerasbackup_backend_error",
                "kerasbackup_error"),
      backend = backend
    )
  }
  env <- list(KERAS_BACKEND = backend)
  if (isFALSE(gpu)) env$CUDA_VISIBLE_DEVICES <- ""
  do.call(Sys.setenv, env)
  if (reticulate::py_available(initialize = FALSE)) {
    # Python copied the environment when it started.
    reticulate::import("os")$environ$update(reticulate::dict(env))
  }
  invisible(backend)
}

# The backend of the imported Keras, or NULL if Keras is not imported yet.
imported_keras_backend <- function() {
  if (!reticulate::py_available(initialize = FALSE)) return(NULL)
  modules <- reticulate::import("sys", convert = FALSE)$modules
  if (!py_value(modules$`__contains__`("keras"))) return(NULL)
  py_value(reticulate::import("keras")$config$backend())
}

python_path <- function() {
  tryCatch(reticulate::py_discover_config()$python,
           error = function(e) "the Python in use")
}
