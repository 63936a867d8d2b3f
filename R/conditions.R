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

# reticulate names a Python object's R classes after its type's MRO
# ("kerasbackup.errors.PreemptedError", ...). This filter puts the package's
# R classes in front for its own exceptions, so that an error raised through
# any fit() (keras3's too) is caught as `kerasbackup_preempted` etc.
# It runs for every Python object reticulate wraps: keep it cheap, and leave
# every other class vector as it is.
kerasbackup_class_filter <- function(classes) {
  if (!any(startsWith(classes, "kerasbackup."))) return(classes)
  ours <- kerasbackup_classes[intersect(names(kerasbackup_classes),
                                        sub("^kerasbackup\\..*\\.", "", classes))]
  if (!length(ours)) return(classes)
  unique(c(unname(ours), "kerasbackup_error", classes))
}

register_class_filter <- function() {
  reticulate::register_class_filter(kerasbackup_class_filter)
}

#' Evaluate a call into Python, turning its exceptions into classed R errors
#'
#' The error is a list (message, call, py_exception) classed, in order: the
#' package's `kerasbackup_*` classes for its own exceptions (and
#' `kerasbackup_error`), `kerasbackup_python_error`, then the exception's
#' class hierarchy as newer reticulate names it (`python.builtin.<Type>`, ...,
#' `python.builtin.BaseException`), then `error`, `condition`. On newer
#' reticulate the error is reticulate's own condition for the exception
#' (its "py_object" attribute is the exception), so it also has
#' `python.builtin.object` and reticulate's with(), R callbacks and
#' py_last_error() treat it as the exception. reticulate 1.28 gives a bare
#' `Rcpp::exception`; the list made from it is no Python object, so it has
#' no `python.builtin.object` class. The package's Python warnings raised
#' during the call are signalled as R warnings of their own class when it
#' returns (before its error, if it failed); see signal_py_warnings().
#' @noRd
with_py_errors <- function(expr, call = rlang::caller_env()) {
  capture <- start_py_warnings()
  on.exit(finish_py_warnings(capture), add = TRUE)
  result <- tryCatch(expr, error = function(e) {
    signal_py_warnings(finish_py_warnings(capture), call)
    cnd <- as_py_condition(e, call)
    if (!reticulate_has_py_conditions()) {
      # reticulate 1.28 would hand only the message to a Python that called
      # the R function this runs in; see remembered_r_error().
      remember_r_error(cnd)
    }
    stop(cnd)
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
    warning(py_warning_condition(record[[1]], record[[2]], call))
  }
  invisible()
}

as_py_condition <- function(e, call = NULL) {
  if (inherits(e, "kerasbackup_python_error")) {
    # Already converted (by an inner call, e.g. inside an R function that
    # Python called).
    return(e)
  }
  call <- if (is.environment(call)) NULL else call
  r_error <- NULL
  if (is_reticulate_py_condition(e)) {
    # Newer reticulate (>= 1.4x): the condition is the Python exception
    # itself, a list whose "py_object" attribute is the exception's ref.
    exc <- attr(e, "py_object", exact = TRUE)
    py_classes <- class(e)
  } else if (inherits(e, "Rcpp::exception")) {
    # reticulate 1.28: a bare Rcpp::exception; the exception object is kept
    # on py_last_error(). Check it is this error, not an older one.
    last <- tryCatch(reticulate::py_last_error(), error = function(err) NULL)
    head <- sub(":.*$", "", conditionMessage(e))
    if (is.null(last) || !(head == last$type || endsWith(head, paste0(".", last$type)))) {
      return(e)
    }
    exc <- attr(last, "exception", exact = TRUE)
    # An R error raised in an R method that Python called: 1.28 passed
    # Python only its message (as a RuntimeError); r_function_to_py()
    # remembered the condition itself.
    r_error <- remembered_r_error(exc)
    if (inherits(r_error, "kerasbackup_python_error")) {
      # One of our Python errors, raised again by the R method: newer
      # reticulate re-raises the Python exception itself, which then comes
      # back as it was.
      return(r_error)
    }
    py_classes <- if (!is.null(exc)) {
      unlist(py_bridge()$exception_classes(exc))
    } else {
      paste0("python.builtin.", c(last$type, "Exception", "BaseException"))
    }
    # A plain list is no Python object: reticulate's methods for
    # python.builtin.object ($, print, with(), r_to_py()) must not see it.
    py_classes <- c(setdiff(py_classes, "python.builtin.object"),
                    "error", "condition")
  } else {
    return(e)
  }
  # The exception's own type: the first Python class name (ours have no dot).
  type <- sub("^.*\\.", "", grep(".", py_classes, fixed = TRUE, value = TRUE)[[1]])
  msg <- if (!is.null(exc)) {
    tryCatch(reticulate::py_str(exc), error = function(err) conditionMessage(e))
  } else {
    conditionMessage(e)
  }
  if (!is_reticulate_py_condition(e) && !is.null(r_error)) {
    # The whole message, as newer reticulate passes it on.
    msg <- tryCatch(conditionMessage(r_error), error = function(err) msg)
  }
  msg <- sub("\n$", "", msg)
  if (!startsWith(msg, paste0(type, ":"))) msg <- paste0(type, ": ", msg)
  ours <- unname(kerasbackup_classes[intersect(
    names(kerasbackup_classes), sub("^.*\\.", "", py_classes)
  )])
  # An R error raised in an R function Python called becomes a RuntimeError
  # on newer reticulate, with the R classes kept in its `r_class`.
  r_classes <- if (is_reticulate_py_condition(e)) r_classes_of(exc) else class(r_error)
  ours <- c(ours, setdiff(grep("^kerasbackup_", r_classes, value = TRUE),
                          "kerasbackup_python_error"))
  if (length(ours)) ours <- unique(c(ours, "kerasbackup_error"))
  out <- list(message = msg, call = call, py_exception = exc)
  if (is_reticulate_py_condition(e)) {
    # Still the Python exception for reticulate (with(), an R callback that
    # re-raises it into Python, py_last_error()).
    attr(out, "py_object") <- attr(e, "py_object", exact = TRUE)
  }
  class(out) <- unique(c(ours, "kerasbackup_python_error", py_classes))
  out
}

# Whether `e` is a condition that newer reticulate made from a Python
# exception: a list carrying the exception's ref in its "py_object"
# attribute (never true on reticulate 1.28, whose errors are Rcpp::exception).
is_reticulate_py_condition <- function(e) {
  is.list(e) && inherits(e, "python.builtin.BaseException") &&
    is.environment(attr(e, "py_object", exact = TRUE))
}

# reticulate 1.28 hands Python only the message of an R error raised in an
# R function it calls. The R methods of our classes (r_function_to_py())
# remember their last few errors, and so do with_py_errors() and
# abort_invalid_arg() for the errors they make, so that the error can be
# found again when its RuntimeError comes back to R.
remember_r_error <- function(e) {
  .py$r_errors <- c(list(e), utils::head(.py$r_errors, 4L))
}

# The remembered R error whose message a RuntimeError `exc` holds, or NULL.
remembered_r_error <- function(exc) {
  if (is.null(exc) || !length(.py$r_errors)) return(NULL)
  text <- tryCatch({
    if (!identical(class(exc)[[1]], "python.builtin.RuntimeError")) return(NULL)
    trimws(reticulate::py_str(exc))
  }, error = function(err) NULL)
  if (is.null(text)) return(NULL)
  for (r_error in .py$r_errors) {
    # (1.28 passes on an rlang error's `message` field, its first line.)
    msgs <- c(tryCatch(conditionMessage(r_error), error = function(err) NULL),
              if (is.list(r_error)) .subset2(r_error, "message"))
    if (is.character(msgs) && text %in% trimws(msgs)) return(r_error)
  }
  NULL
}

# Whether reticulate signals Python exceptions as conditions that are the
# exception, and keeps an R error's classes across Python (reticulate >=
# 1.29; from 1.38 the condition is a list whose "py_object" attribute is the
# exception), rather than as a bare Rcpp::exception (1.28).
reticulate_has_py_conditions <- function() {
  if (is.null(.py$py_conditions)) {
    .py$py_conditions <- utils::packageVersion("reticulate") >= "1.29"
  }
  .py$py_conditions
}

# The R classes newer reticulate keeps on a Python exception made from an R
# error (`r_class`), or NULL.
r_classes_of <- function(exc) {
  if (is.null(exc)) return(NULL)
  tryCatch({
    if (!reticulate::py_has_attr(exc, "r_class")) return(NULL)
    out <- reticulate::py_to_r(reticulate::py_get_attr(exc, "r_class"))
    if (is.character(out)) out else NULL
  }, error = function(err) NULL)
}

#' Stop with a classed error for a bad argument
#' @noRd
abort_invalid_arg <- function(arg, value, accepted,
                              call = rlang::caller_env(), shown = NULL) {
  # `shown` describes a value that must not be shown (credentials); the
  # condition then keeps only that description.
  if (!is.null(shown)) value <- shown
  received <- if (is.null(shown)) describe_value(value) else shown
  remember <- if (reticulate_loaded_old()) remember_r_error else function(e) NULL
  withCallingHandlers(error = remember, cli::cli_abort(
    c("{.arg {arg}} must be {accepted}.",
      x = "Received: {.code {received}}."),
    class = c("kerasbackup_invalid_argument", "kerasbackup_error"),
    arg = arg,
    value = value,
    call = call
  ))
}

# Whether reticulate 1.28 (or older) is loaded; FALSE when reticulate is not
# loaded (nothing can call R from Python then).
reticulate_loaded_old <- function() {
  isNamespaceLoaded("reticulate") && !reticulate_has_py_conditions()
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

# The conditions are lists: message, call and py_exception (the Python
# exception, or NULL). Any other name is looked up on the exception, so
# `err$backup_dir` works as on reticulate's own conditions. These methods
# come before reticulate's (the class is in front of python.builtin.*), so
# reticulate's methods for Python objects never see a plain list.

#' @export
`$.kerasbackup_python_error` <- function(x, name) {
  if (name %in% names(unclass(x))) return(.subset2(x, name))
  exc <- .subset2(x, "py_exception")
  if (is.null(exc) || !reticulate::py_has_attr(exc, name)) return(NULL)
  reticulate::py_to_r(reticulate::py_get_attr(exc, name))
}

#' @export
`[[.kerasbackup_python_error` <- function(x, i, ...) {
  if (is.character(i)) `$.kerasbackup_python_error`(x, i) else .subset2(x, i)
}

#' @export
`$<-.kerasbackup_python_error` <- function(x, name, value) {
  cls <- class(x)
  x <- unclass(x)  # keeps the py_object attribute
  x[[name]] <- value
  class(x) <- cls
  x
}

#' @export
`[[<-.kerasbackup_python_error` <- function(x, i, value) {
  cls <- class(x)
  x <- unclass(x)
  x[[i]] <- value
  class(x) <- cls
  x
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
  cat("<", class(object)[[1]], "> ", sep = "")
  utils::str(list(message = .subset2(object, "message"),
                  call = .subset2(object, "call")), ...)
}
