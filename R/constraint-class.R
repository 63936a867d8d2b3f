#' Define a custom weight constraint class
#'
#' Makes a Python subclass of `keras.constraints.Constraint` (or of
#' `inherit`) whose methods are R functions, and returns its generator: an R
#' function, with the arguments of `initialize()`, that returns a new
#' constraint, to be given to a layer as e.g. `kernel_constraint`. Keras
#' applies it to the weight after each optimizer step.
#'
#' @inheritSection Layer Symbols in scope
#' @inheritParams Layer
#' @param call `function(w)`: the projected weight. It becomes the class's
#'   `__call__`.
#' @param get_config `function()`: a named list of the constraint's
#'   parameters.
#' @returns A generator function.
#' @family subclassing
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' constraint_nonneg <- Constraint(
#'   "NonNegative",
#'   call = function(w) op_relu(w)
#' )
#' layer_dense(units = 2, kernel_constraint = constraint_nonneg())
Constraint <- function(classname, call = NULL, get_config = NULL, ...,
                       public = list(), private = list(), inherit = NULL,
                       parent_env = parent.frame()) {
  members <- collect_members(list(call = call, get_config = get_config),
                             ..., public = public)
  members <- as_classmethods(members, "from_config")
  new_class_generator(
    classname, members, private = private, inherit = substitute(inherit),
    parent_env = parent_env, family = "constraint",
    renames = c(call = "__call__"),
    default_base = function() py_keras()$constraints$Constraint
  )
}
