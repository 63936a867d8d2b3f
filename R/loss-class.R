#' Define a custom loss class
#'
#' Makes a Python subclass of `keras.losses.Loss` (or of `inherit`) whose
#' methods are R functions, and returns its generator: an R function, with
#' the arguments of `initialize()` (by default those of Keras' `Loss`:
#' `name`, `reduction` and `dtype`), that returns a new loss.
#'
#' @inheritSection Layer Symbols in scope
#' @inheritParams Layer
#' @param call `function(y_true, y_pred)`: the per-sample losses; Keras
#'   applies the sample weights and the reduction.
#' @returns A generator function.
#' @family subclassing
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' loss_absolute <- Loss(
#'   "Absolute",
#'   call = function(y_true, y_pred) {
#'     op_mean(op_abs(op_subtract(y_true, y_pred)), axis = -1)
#'   }
#' )
#' loss <- loss_absolute(name = "abs")
#' loss(c(0, 1), c(0.5, 3))
Loss <- function(classname, call = NULL, ..., public = list(),
                 private = list(), inherit = NULL,
                 parent_env = parent.frame()) {
  members <- collect_members(list(call = call), ..., public = public)
  members <- as_classmethods(members, "from_config")
  new_class_generator(
    classname, members, private = private, inherit = substitute(inherit),
    parent_env = parent_env, family = "loss",
    default_base = function() py_keras()$losses$Loss
  )
}

#' @rdname Loss
#' @export
new_loss_class <- Loss
