# Choosing the Keras backend, before Python imports Keras.

#' Choose the Keras backend
#'
#' Sets `KERAS_BACKEND` for the Keras that this session will import. Keras
#' reads it once, when it is first imported: after that, only the backend
#' already in use is accepted.
#'
#' @param backend `"tensorflow"`, `"jax"`, `"torch"` or `"numpy"`. This
#'   package installs and tests TensorFlow; the others need their own
#'   Python packages.
#' @returns The backend, invisibly.
#' @family config
#' @export
#' @examples
#' \dontrun{
#' use_backend("tensorflow")
#' }
use_backend <- function(backend) {
  backends <- c("tensorflow", "jax", "torch", "numpy")
  if (!(is_string(backend) && backend %in% backends)) {
    abort_invalid_arg("backend", backend,
                      paste0("one of ", paste0('"', backends, '"', collapse = ", ")))
  }
  if (keras_imported()) {
    current <- config_backend()
    if (!identical(current, backend)) {
      cli::cli_abort(
        c("Keras is already running with the {.val {current}} backend.",
          i = "Call {.code use_backend({.val {backend}})} in a new R session, before
               anything uses Keras."),
        class = c("kerasbackup_backend_error", "kerasbackup_error")
      )
    }
  } else {
    Sys.setenv(KERAS_BACKEND = backend)
  }
  invisible(backend)
}

keras_imported <- function() {
  reticulate::py_available(initialize = FALSE) &&
    reticulate::py_module_available("keras") &&
    isTRUE(reticulate::py_eval("'keras' in __import__('sys').modules"))
}
