#' Define a custom model class
#'
#' Makes a Python subclass of `keras.Model` (or of `inherit`) whose methods
#' are R functions, and returns its generator: an R function, with the
#' arguments of `initialize()`, that returns a new model. A model class that
#' defines no `initialize()` takes `keras_model()`'s `inputs` and `outputs`,
#' which makes a functional model of this class; `train_step()` and
#' `test_step()` then customise what `fit()` and `evaluate()` do with each
#' batch, and `compile()` may be overridden too.
#'
#' @inheritSection Layer Symbols in scope
#' @inheritParams Layer
#' @param initialize,call Set the model up and compute its output, as for
#'   [Layer()].
#' @param train_step,test_step,predict_step Called with one batch of data
#'   (`list(x, y, sample_weight)`, as far as given); `train_step()` and
#'   `test_step()` return a named list of metric values.
#' @param compute_loss,compute_metrics Override how the loss and metrics
#'   are computed from `(x, y, y_pred, sample_weight)`.
#' @returns A generator function.
#' @family subclassing
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' CustomModel <- Model(
#'   "CustomModel",
#'   initialize = function(units = 4, ...) {
#'     super$initialize(...)
#'     self$dense <- layer_dense(units = units)
#'   },
#'   call = function(inputs) self$dense(inputs)
#' )
#' model <- CustomModel(units = 2)
#' model(op_ones(c(1, 3)))
Model <- function(classname, initialize = NULL, call = NULL,
                  train_step = NULL, predict_step = NULL, test_step = NULL,
                  compute_loss = NULL, compute_metrics = NULL, ...,
                  public = list(), private = list(), inherit = NULL,
                  parent_env = parent.frame()) {
  members <- collect_members(
    list(initialize = initialize, call = call, train_step = train_step,
         predict_step = predict_step, test_step = test_step,
         compute_loss = compute_loss, compute_metrics = compute_metrics),
    ..., public = public
  )
  members <- as_classmethods(members, "from_config")
  new_class_generator(
    classname, members, private = private, inherit = substitute(inherit),
    parent_env = parent_env, family = "model",
    default_base = function() py_keras()$Model
  )
}

#' @rdname Model
#' @export
new_model_class <- Model
