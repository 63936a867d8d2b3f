# The package's Python warnings as R warnings, also where no kerasbackup R
# function is on the stack: inside keras3's fit(), the callback's warnings
# come through the sink that py_kb() hands to the Python package
# (kerasbackup.errors.set_warning_sink()).

#' An R warning for one of the package's Python warnings
#'
#' Classed `kerasbackup_<name>` (when known), `kerasbackup_warning`,
#' `warning`, `condition`.
#' @noRd
py_warning_condition <- function(py_classes, message, call = NULL) {
  py_classes <- sub("^.*\\.", "", unlist(py_classes))
  ours <- unname(kerasbackup_warning_classes[
    intersect(names(kerasbackup_warning_classes), py_classes)])
  structure(
    class = unique(c(ours, "kerasbackup_warning", "warning", "condition")),
    list(message = paste0(py_classes[[1]], ": ", message),
         call = if (is.environment(call)) NULL else call)
  )
}

# Called by Python on R's thread. FALSE leaves the warning to Python:
# with_py_errors() collects it and signals it when its call returns.
py_warning_sink <- function(py_classes, message) {
  if (isTRUE(.py$collecting)) return(FALSE)
  cond <- py_warning_condition(py_classes, message)
  if (exiting_handler_for(cond)) {
    # A tryCatch() handler would unwind R through Python's frames, which
    # reticulate cannot do safely: show the warning as R would instead.
    cat("Warning message:\n", conditionMessage(cond), "\n", sep = "",
        file = stderr())
    return(TRUE)
  }
  warning(cond)
  TRUE
}

# Whether a tryCatch() up the stack has a handler for one of the condition's
# classes (tryCatch() installs each handler in a frame of its internal
# doTryCatch(), whose `name` is the class).
exiting_handler_for <- function(cond) {
  calls <- sys.calls()
  for (i in rev(seq_along(calls))) {
    head <- calls[[i]][[1]]
    if (is.name(head) && identical(as.character(head), "doTryCatch")) {
      name <- get0("name", envir = sys.frame(i), inherits = FALSE)
      if (is.character(name) && any(name %in% class(cond))) return(TRUE)
    }
  }
  FALSE
}
