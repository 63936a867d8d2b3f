#' Define a custom callback class
#'
#' Makes a Python `keras.callbacks.Callback` subclass whose methods are R
#' functions, as in keras3. Methods may be written with or without a `self`
#' argument: `self` (the callback instance, with `self$model` and
#' `self$params`) is in scope either way. Epoch and batch indices reach R
#' 1-based. A named list returned by a method is merged into `logs`.
#'
#' To have its state saved and restored by [callback_backup_and_restore()],
#' a callback defines `get_state = function() list(...)` and
#' `set_state = function(state) ...`.
#'
#' @param classname String, the name of the Python class.
#' @param on_epoch_begin,on_epoch_end,on_train_begin,on_train_end,on_train_batch_begin,on_train_batch_end,on_test_begin,on_test_end,on_test_batch_begin,on_test_batch_end,on_predict_begin,on_predict_end,on_predict_batch_begin,on_predict_batch_end
#'   R functions called at those points of training. Epoch and batch hooks
#'   are called with `(epoch, logs)` or `(batch, logs)`, the others with
#'   `(logs)`.
#' @param ... More named methods (such as `get_state` and `set_state`) or
#'   fields of the class.
#' @returns A function that creates instances of the class; its arguments are
#'   stored as fields of the new instance.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' callback_print_epoch <- new_callback_class(
#'   "PrintEpoch",
#'   on_epoch_end = function(epoch, logs = NULL) {
#'     cat("finished epoch", epoch, "\n")
#'   }
#' )
#' cb <- callback_print_epoch()
new_callback_class <- function(classname,
                               on_epoch_begin = NULL, on_epoch_end = NULL,
                               on_train_begin = NULL, on_train_end = NULL,
                               on_train_batch_begin = NULL,
                               on_train_batch_end = NULL,
                               on_test_begin = NULL, on_test_end = NULL,
                               on_test_batch_begin = NULL,
                               on_test_batch_end = NULL,
                               on_predict_begin = NULL, on_predict_end = NULL,
                               on_predict_batch_begin = NULL,
                               on_predict_batch_end = NULL,
                               ...) {
  if (!is_string(classname)) {
    abort_invalid_arg("classname", classname, "a single non-empty string")
  }
  hooks <- list(
    on_epoch_begin = on_epoch_begin, on_epoch_end = on_epoch_end,
    on_train_begin = on_train_begin, on_train_end = on_train_end,
    on_train_batch_begin = on_train_batch_begin,
    on_train_batch_end = on_train_batch_end,
    on_test_begin = on_test_begin, on_test_end = on_test_end,
    on_test_batch_begin = on_test_batch_begin,
    on_test_batch_end = on_test_batch_end,
    on_predict_begin = on_predict_begin, on_predict_end = on_predict_end,
    on_predict_batch_begin = on_predict_batch_begin,
    on_predict_batch_end = on_predict_batch_end
  )
  members <- c(hooks[!vapply(hooks, is.null, TRUE)], list(...))
  if (length(members) && (is.null(names(members)) || any(!nzchar(names(members))))) {
    cli::cli_abort("All members of a callback class must be named.",
                   class = c("kerasbackup_invalid_argument", "kerasbackup_error"))
  }
  is_method <- vapply(members, is.function, TRUE)
  methods <- lapply(members[is_method], wrap_method)
  fields <- members[!is_method]

  py_class <- NULL
  constructor <- function(...) {
    if (is.null(py_class)) {
      py_class <<- py_bridge()$new_callback_class(classname, methods, fields)
    }
    instance <- py_class()
    args <- list(...)
    for (name in names(args)) {
      reticulate::py_set_attr(instance, name, args[[name]])
    }
    instance
  }
  structure(constructor, class = c("kerasbackup_callback_class", "function"),
            classname = classname)
}

#' @rdname new_callback_class
#' @export
Callback <- new_callback_class

#' @export
print.kerasbackup_callback_class <- function(x, ...) {
  cat("<callback class ", attr(x, "classname"), ">\n", sep = "")
  invisible(x)
}

# Calls an R method with `self` available, whether or not it is a formal.
wrap_method <- function(fn) {
  if ("self" %in% names(formals(fn))) {
    return(function(self, ...) fn(self, ...))
  }
  function(self, ...) {
    env <- new.env(parent = environment(fn))
    env$self <- self
    environment(fn) <- env
    fn(...)
  }
}
