#' Optimizers
#'
#' Stochastic gradient descent and Adam, with keras3's argument names and
#' defaults.
#'
#' @param learning_rate A number, or a learning-rate schedule such as
#'   [learning_rate_schedule_exponential_decay()].
#' @param momentum,nesterov SGD's momentum and whether to use Nesterov
#'   momentum.
#' @param beta_1,beta_2,epsilon,amsgrad Adam's parameters.
#' @param ... More arguments to the Keras optimizer (e.g. `clipnorm`).
#' @returns A Keras optimizer.
#' @name optimizers
#' @examplesIf kerasbackup:::python_ready()
#' optimizer_sgd(learning_rate = 0.1)
#' optimizer_adam(learning_rate_schedule_exponential_decay(0.01, 100, 0.9))
NULL

#' @rdname optimizers
#' @export
optimizer_sgd <- function(learning_rate = 0.01, momentum = 0, nesterov = FALSE,
                          ...) {
  with_py_errors(py_keras()$optimizers$SGD(
    learning_rate = learning_rate, momentum = momentum, nesterov = nesterov, ...
  ))
}

#' @rdname optimizers
#' @export
optimizer_adam <- function(learning_rate = 0.001, beta_1 = 0.9, beta_2 = 0.999,
                           epsilon = 1e-07, amsgrad = FALSE, ...) {
  with_py_errors(py_keras()$optimizers$Adam(
    learning_rate = learning_rate, beta_1 = beta_1, beta_2 = beta_2,
    epsilon = epsilon, amsgrad = amsgrad, ...
  ))
}

#' Exponential learning-rate decay
#'
#' @param initial_learning_rate The starting learning rate.
#' @param decay_steps Positive integer, steps per decay period.
#' @param decay_rate The decay factor.
#' @param staircase Whether to decay in discrete steps.
#' @returns A Keras `LearningRateSchedule`.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' learning_rate_schedule_exponential_decay(0.01, decay_steps = 100,
#'                                          decay_rate = 0.9)
learning_rate_schedule_exponential_decay <- function(initial_learning_rate,
                                                     decay_steps, decay_rate,
                                                     staircase = FALSE) {
  with_py_errors(py_keras()$optimizers$schedules$ExponentialDecay(
    initial_learning_rate = initial_learning_rate,
    decay_steps = as.integer(decay_steps), decay_rate = decay_rate,
    staircase = staircase
  ))
}
