# Python exceptions and warnings -> classed R conditions, and argument errors.

# R classes added for the package's own Python exceptions.
kerasbackup_classes <- c(
  PreemptedError = "kerasbackup_preempted",
  PreemptionAbort = "kerasbackup_preempted",
  FingerprintMismatchError = "kerasbackup_fingerprint_mismatch",
  UnbuiltStateError = "kerasbackup_unbuilt_state",
  CallbackStateError = "kerasbackup_callback_state_error",
  BackupLockedError = "kerasbackup_locked",
  CorruptCheckpointError = "kerasbackup_corrupt_checkpoint",
  NoCheckpointError = "kerasbackup_no_checkpoint",
  BackupWriteError = "kerasbackup_write_error",
  BackupDirError = "kerasbackup_backup_dir_error",
  PeerLostError = "kerasbackup_peer_lost",
  ResumeMismatchError = "kerasbackup_resume_mismatch",
  BackupError = "kerasbackup_error"
)

# R classes of the package's own Python warnings (all also
# `kerasbackup_warning`, `warning`, `condition`).
kerasbackup_warning_classes <- c(
  CheckpointFallbackWarning = "kerasbackup_checkpoint_fallback_warning",
  StaleLockWarning = "kerasbackup_stale_lock_warning",
  InexactResumeWarning = "kerasbackup_inexact_resume",
  ResumeWarning = "kerasbackup_resume_warning",
  SaveErrorWarning = "kerasbackup_save_error_warning"
)

#' Evaluate a call into Python, turning its exceptions into classed R errors
#'
#' Newer reticulate already classes Python errors as
#' `python.builtin.<Type>`; reticulate 1.28 returns a bare `Rcpp::exception`.
#' Both become a condition whose classes follow the exception's class
#' hierarchy, with `kerasbackup_*` classes in front for the package's own
#' exceptions. The package's Python warnings raised during the call are
#' signalled as R warnings of their own class when it returns (before its
#' error, if it failed); see signal_py_warnings().
#' @noRd
with_py_errors <- function(expr, call = rlang::caller_env()) {
  capture <- start_py_warnings()
  on.exit(finish_py_warnings(capture), add = TRUE)
  result <- tryCatch(expr, error = function(e) {
    signal_py_warnings(finish_py_warnings(capture), call)
    stop(as_py_condition(e, call))
  })
  signal_py_warnings(finish_py_warnings(capture), call)
  result
}

# Collect at the outermost call only: an R callback that calls Python
# during fit() leaves its warnings to the fit.
start_py_warnings <- function() {
  if (isTRUE(.py$collecting)) return(NULL)
  capture <- py_bridge()$WarningCapture()$start()
  .py$collecting <- TRUE
  capture
}

finish_py_warnings <- function(capture) {
  if (is.null(capture)) return(list())
  .py$collecting <- FALSE
  capture$finish()
}

#' Signal Python warnings as R warnings
#'
#' Each `list(classes, message)` from `WarningCapture.finish()` becomes an R
#' warning classed `kerasbackup_<name>_warning` (when known),
#' `kerasbackup_warning`, `warning`, `condition`, so that
#' `withCallingHandlers(warning = )` and
#' `tryCatch(kerasbackup_checkpoint_fallback_warning = )` see it.
#' @noRd
signal_py_warnings <- function(records, call = NULL) {
  for (record in records) {
    py_classes <- unlist(record[[1]])
    ours <- unname(kerasbackup_warning_classes[
      intersect(names(kerasbackup_warning_classes), py_classes)])
    warning(structure(
      class = unique(c(ours, "kerasbackup_warning", "warning", "condition")),
      list(message = paste0(py_classes[[1]], ": ", record[[2]]),
           call = if (is.environment(call)) NULL else call)
    ))
  }
  invisible()
}

as_py_condition <- function(e, call = NULL) {
  if (inherits(e, c("kerasbackup_error", "kerasbackup_python_error")) &&
      !inherits(e, "Rcpp::exception")) {
    # Already converted (e.g. by an inner call, inside an R function that
    # Python called): it is a plain list, not a Python exception.
    return(e)
  }
  if (inherits(e, "python.builtin.BaseException")) {
    # Newer reticulate: the condition is the Python exception itself.
    exc <- e
    py_classes <- tryCatch(
      unlist(py_bridge()$exception_classes(exc)),
      error = function(err) setdiff(class(e), c("error", "condition"))
    )
  } else if (inherits(e, "Rcpp::exception")) {
    # reticulate 1.28: a bare Rcpp::exception; the exception object is kept
    # on py_last_error(). Check it is this error, not an older one.
    last <- tryCatch(reticulate::py_last_error(), error = function(err) NULL)
    head <- sub(":.*$", "", conditionMessage(e))
    if (is.null(last) || !(head == last$type || endsWith(head, paste0(".", last$type)))) {
      return(e)
    }
    exc <- attr(last, "exception", exact = TRUE)
    py_classes <- if (!is.null(exc)) {
      unlist(py_bridge()$exception_classes(exc))
    } else {
      paste0("python.builtin.", c(last$type, "Exception", "BaseException",
                                  "object"))
    }
  } else {
    return(e)
  }
  type <- sub("^.*\\.", "", py_classes[[1]])
  msg <- if (!is.null(exc)) {
    tryCatch(reticulate::py_str(exc), error = function(err) conditionMessage(e))
  } else {
    conditionMessage(e)
  }
  msg <- sub("\n$", "", msg)
  if (!startsWith(msg, paste0(type, ":"))) msg <- paste0(type, ": ", msg)
  ours <- unname(kerasbackup_classes[intersect(
    names(kerasbackup_classes), sub("^.*\\.", "", py_classes)
  )])
  if (length(ours)) ours <- unique(c(ours, "kerasbackup_error"))
  # The condition is a plain list, so a class of our own must come before
  # python.builtin.object: reticulate's methods for that class ($, print)
  # expect a Python object.
  structure(
    class = unique(c(ours, "kerasbackup_python_error", py_classes, "error",
                     "condition")),
    list(message = msg, call = if (is.environment(call)) NULL else call,
         py_exception = exc)
  )
}

#' Stop with a classed error for a bad argument
#' @noRd
abort_invalid_arg <- function(arg, value, accepted,
                              call = rlang::caller_env(), shown = NULL) {
  # `shown` describes a value that must not be shown (credentials); the
  # condition then keeps only that description.
  if (!is.null(shown)) value <- shown
  received <- if (is.null(shown)) describe_value(value) else shown
  cli::cli_abort(
    c("{.arg {arg}} must be {accepted}.",
      x = "Received: {.code {received}}."),
    class = c("kerasbackup_invalid_argument", "kerasbackup_error"),
    arg = arg,
    value = value,
    call = call
  )
}

describe_value <- function(x) {
  if (is.null(x)) return("NULL")
  if (is.function(x)) return("a function")
  if (inherits(x, "python.builtin.object")) return(class(x)[[1]])
  out <- paste(deparse(x, width.cutoff = 60L), collapse = " ")
  if (nchar(out) > 60) out <- paste0(substr(out, 1, 57), "...")
  out
}

is_string <- function(x) {
  is.character(x) && length(x) == 1L && !is.na(x) && nzchar(x)
}

is_flag <- function(x) {
  is.logical(x) && length(x) == 1L && !is.na(x)
}

is_whole_number <- function(x, min = 1) {
  is.numeric(x) && length(x) == 1L && !is.na(x) && is.finite(x) &&
    x == trunc(x) && x >= min
}

#' @export
`$.kerasbackup_python_error` <- function(x, name) .subset2(x, name)

#' @export
`[[.kerasbackup_python_error` <- function(x, i, ...) .subset2(x, i)

#' @export
`$<-.kerasbackup_python_error` <- function(x, name, value) {
  cls <- class(x)
  x <- unclass(x)
  x[[name]] <- value
  structure(x, class = cls)
}

#' @export
`[[<-.kerasbackup_python_error` <- function(x, i, value) {
  cls <- class(x)
  x <- unclass(x)
  x[[i]] <- value
  structure(x, class = cls)
}

#' @export
conditionMessage.kerasbackup_python_error <- function(c) .subset2(c, "message")

#' @export
conditionCall.kerasbackup_python_error <- function(c) .subset2(c, "call")

#' @export
print.kerasbackup_python_error <- function(x, ...) {
  cat("<", class(x)[[1]], ": ", conditionMessage(x), ">\n", sep = "")
  invisible(x)
}

#' @export
format.kerasbackup_python_error <- function(x, ...) conditionMessage(x)

#' @export
str.kerasbackup_python_error <- function(object, ...) {
  utils::str(unclass(object[c("message", "call")]), ...)
}
