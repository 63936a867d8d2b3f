#' Define a custom learning-rate schedule class
#'
#' Makes a Python subclass of `keras.optimizers.schedules.LearningRateSchedule`
#' (or of `inherit`) whose methods are R functions, and returns its
#' generator: an R function, with the arguments of `initialize()`, that
#' returns a new schedule, to be given to an optimizer as its
#' `learning_rate`.
#'
#' @inheritSection Layer Symbols in scope
#' @inheritParams Layer
#' @param call `function(step)`: the learning rate at `step` (a tensor, the
#'   optimizer's iteration count, from 0). It becomes the class's
#'   `__call__`.
#' @param initialize Sets the schedule's parameters as fields of `self`.
#' @param get_config `function()`: a named list of the parameters. Needed
#'   for saving the optimizer's configuration.
#' @returns A generator function.
#' @family subclassing
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' schedule_halving <- LearningRateSchedule(
#'   "Halving",
#'   initialize = function(initial = 0.1, every = 10) {
#'     self$initial <- initial
#'     self$every <- every
#'   },
#'   call = function(step) {
#'     op_multiply(self$initial,
#'                 op_power(0.5, op_floor(op_divide(step, self$every))))
#'   },
#'   get_config = function() list(initial = self$initial, every = self$every)
#' )
#' schedule <- schedule_halving(0.01, every = 5)
#' schedule(12)
#' optimizer_sgd(learning_rate = schedule)
LearningRateSchedule <- function(classname, call = NULL, initialize = NULL,
                                 get_config = NULL, ..., public = list(),
                                 private = list(), inherit = NULL,
                                 parent_env = parent.frame()) {
  members <- collect_members(
    list(initialize = initialize, call = call, get_config = get_config),
    ..., public = public
  )
  members <- as_classmethods(members, "from_config")
  new_class_generator(
    classname, members, private = private, inherit = substitute(inherit),
    parent_env = parent_env, family = "learning rate schedule",
    renames = c(call = "__call__"),
    default_base = function() py_keras()$optimizers$schedules$LearningRateSchedule
  )
}

#' @rdname LearningRateSchedule
#' @export
new_learning_rate_schedule_class <- LearningRateSchedule
