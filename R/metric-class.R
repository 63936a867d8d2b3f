#' Define a custom metric class
#'
#' Makes a Python subclass of `keras.metrics.Metric` (or of `inherit`)
#' whose methods are R functions, and returns its generator: an R function,
#' with the arguments of `initialize()`, that returns a new metric. Its
#' state lives in variables made with `self$add_variable()`, which
#' [callback_backup_and_restore()] saves and restores with the model's.
#'
#' @inheritSection Layer Symbols in scope
#' @inheritParams Layer
#' @param initialize Sets the metric up: call `super$initialize(...)` (which
#'   takes `name` and `dtype`) and create the state variables.
#' @param update_state `function(y_true, y_pred, sample_weight = NULL)`:
#'   updates the state variables from one batch.
#' @param result `function()`: the metric's value, from the state.
#' @returns A generator function.
#' @family subclassing
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' metric_total <- Metric(
#'   "Total",
#'   initialize = function(name = "total", ...) {
#'     super$initialize(name = name, ...)
#'     self$total <- self$add_variable(shape = list(), initializer = "zeros",
#'                                     name = "total")
#'   },
#'   update_state = function(y_true, y_pred, sample_weight = NULL) {
#'     self$total$assign_add(op_sum(y_pred))
#'   },
#'   result = function() op_convert_to_tensor(self$total)
#' )
#' m <- metric_total()
#' m$update_state(c(0, 0), c(1, 2))
#' m$result()
Metric <- function(classname, initialize = NULL, update_state = NULL,
                   result = NULL, ..., public = list(), private = list(),
                   inherit = NULL, parent_env = parent.frame()) {
  members <- collect_members(
    list(initialize = initialize, update_state = update_state,
         result = result),
    ..., public = public
  )
  members <- as_classmethods(members, "from_config")
  new_class_generator(
    classname, members, private = private, inherit = substitute(inherit),
    parent_env = parent_env, family = "metric",
    default_base = function() py_keras()$metrics$Metric
  )
}

#' @rdname Metric
#' @export
new_metric_class <- Metric

#' Name an R function for use as a metric
#'
#' `compile(metrics = )` takes R functions as they are, named after their
#' list name; `custom_metric()` gives one the name its values are logged
#' under (`history$metrics`, the logs of callbacks), as keras3's does.
#'
#' @param name String, the metric's name.
#' @param metric_fn `function(y_true, y_pred)` returning a tensor of
#'   per-sample values (averaged over the epoch) or a scalar.
#' @returns A Python callable named `name`, for `compile(metrics = )`.
#' @family subclassing
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' mean_error <- custom_metric("mean_error", function(y_true, y_pred) {
#'   op_mean(y_pred - y_true, axis = -1)
#' })
#' model <- keras_model_sequential(input_shape = 2) %>% layer_dense(1)
#' model %>% compile(optimizer = "sgd", loss = "mse", metrics = mean_error)
custom_metric <- function(name, metric_fn) {
  if (!(is.character(name) && length(name) == 1L && !is.na(name) &&
        nzchar(name))) {
    abort_invalid_arg("name", name, "a non-empty string")
  }
  if (!is.function(metric_fn) || is_py_object(metric_fn)) {
    abort_invalid_arg("metric_fn", metric_fn, "an R function")
  }
  attr(metric_fn, "py_function_name") <- name
  as_callable(metric_fn, "metric_fn", default_name = name)
}
