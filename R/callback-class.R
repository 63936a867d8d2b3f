#' Define a custom callback class
#'
#' Makes a Python subclass of `keras.callbacks.Callback` (or of `inherit`)
#' whose methods are R functions, as in keras3, and returns its generator:
#' an R function, with the arguments of `initialize()`, that returns a new
#' callback. `initialize()` runs as the constructor: call
#' `super$initialize()` in it and keep its arguments as fields
#' (`self$patience <- patience`). A class without `initialize()` stores the
#' generator's (named) arguments as fields of the new instance.
#'
#' Epoch and batch indices reach R 1-based. A named list returned by a hook
#' is merged into `logs`. `self$model` is the model being trained, and
#' `self$model$stop_training <- TRUE` stops training.
#'
#' To have its state saved and restored by [callback_backup_and_restore()],
#' a callback defines `get_state = function() list(...)` and
#' `set_state = function(state) ...`.
#'
#' @inheritSection Layer Symbols in scope
#' @inheritParams Layer
#' @param on_epoch_begin,on_epoch_end,on_train_begin,on_train_end,on_train_batch_begin,on_train_batch_end,on_test_begin,on_test_end,on_test_batch_begin,on_test_batch_end,on_predict_begin,on_predict_end,on_predict_batch_begin,on_predict_batch_end
#'   R functions called at those points of training. Epoch and batch hooks
#'   are called with `(epoch, logs)` or `(batch, logs)`, the others with
#'   `(logs)`.
#' @param ... More named methods (such as `initialize`, `get_state` and
#'   `set_state`) or fields of the class. Trailing commas are allowed.
#' @returns A generator function.
#' @family subclassing
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' callback_print_epoch <- Callback(
#'   "PrintEpoch",
#'   initialize = function(prefix = "finished epoch") {
#'     super$initialize()
#'     self$prefix <- prefix
#'   },
#'   on_epoch_end = function(epoch, logs = NULL) {
#'     cat(self$prefix, epoch, "\n")
#'   },
#' )
#' cb <- callback_print_epoch()
#' cb$prefix
Callback <- function(classname,
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
                     ..., public = list(), private = list(),
                     inherit = NULL, parent_env = parent.frame()) {
  members <- collect_members(
    list(
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
    ),
    ..., public = public
  )
  members <- as_classmethods(members, "from_config")
  has_init <- any(c("initialize", "__init__") %in% names(members))
  new_class_generator(
    classname, members, private = private, inherit = substitute(inherit),
    parent_env = parent_env, family = "callback",
    hooks = callback_hooks,
    default_base = function() py_keras()$callbacks$Callback,
    make_body = if (!has_init) function(args) bquote({
      fields <- .(args)
      if (length(fields) && !is_named_list(fields)) {
        abort_invalid_arg("...", fields, "named fields (the class has no initialize())")
      }
      set_fields(new_instance(list()), fields)
    })
  )
}

#' @rdname Callback
#' @export
new_callback_class <- Callback

callback_hooks <- c(
  on_epoch_begin = "index", on_epoch_end = "index",
  on_batch_begin = "index", on_batch_end = "index",
  on_train_batch_begin = "index", on_train_batch_end = "index",
  on_test_batch_begin = "index", on_test_batch_end = "index",
  on_predict_batch_begin = "index", on_predict_batch_end = "index",
  on_train_begin = "logs", on_train_end = "logs",
  on_test_begin = "logs", on_test_end = "logs",
  on_predict_begin = "logs", on_predict_end = "logs"
)

set_fields <- function(instance, fields) {
  for (name in names(fields)) {
    reticulate::py_set_attr(instance, name, fields[[name]])
  }
  instance
}

# `self$model$stop_training <- TRUE` ends by assigning the model back to
# `self$model`, a read-only property: that assignment is a no-op.
`$<-.keras.src.callbacks.callback.Callback` <- function(x, name, value) {
  if (identical(name, "model") && is_py_object(value) &&
      reticulate::py_has_attr(x, "_model") &&
      identical(reticulate::py_id(value),
                reticulate::py_id(reticulate::py_get_attr(x, "_model")))) {
    return(x)
  }
  NextMethod()
}

`[[<-.keras.src.callbacks.callback.Callback` <- `$<-.keras.src.callbacks.callback.Callback`
