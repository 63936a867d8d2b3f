# Preprocessing and decoding for models made by the application_*()
# wrappers, which record their keras.applications module on the model.

#' Preprocess inputs for, and decode predictions of, a pretrained model
#'
#' Each application (e.g. [application_resnet50()]) comes with its own
#' input preprocessing and prediction decoding in its `keras.applications`
#' module; these functions find them from the model.
#'
#' @param model A model made by an `application_*()` function.
#' @param x A batch of images (an R array or a tensor); if missing, the
#'   preprocessing function itself is returned.
#' @param ... More arguments for Keras' `preprocess_input()` or
#'   `decode_predictions()`.
#' @param data_format `NULL` (the default image data format),
#'   `"channels_last"` or `"channels_first"`.
#' @param preds The model's predictions (a matrix of class scores).
#' @param top The number of top classes to return per sample.
#' @returns `application_preprocess_inputs()`: the preprocessed batch (or a
#'   function). `application_decode_predictions()`: a list with one data
#'   frame per sample (`class_name`, `class_description`, `score`).
#' @family applications
#' @export
application_preprocess_inputs <- function(model, x, ..., data_format = NULL) {
  fn <- application_module(model)$preprocess_input
  if (missing(x)) {
    return(function(x, ...) with_py_errors(fn(as_py_array(x), ..., data_format = data_format)))
  }
  with_py_errors(fn(as_py_array(x), ..., data_format = data_format))
}

#' @rdname application_preprocess_inputs
#' @export
application_decode_predictions <- function(model, preds, top = 5L, ...) {
  fn <- application_module(model)$decode_predictions
  decoded_predictions(with_download_errors(with_py_errors(
    fn(as_py_array(preds), top = as_integer(top, "top"), ...)
  )))
}

application_module <- function(model) {
  module <- attr(model, "keras_application_module", exact = TRUE)
  if (is.null(module)) {
    abort_invalid_arg("model", model, "a model made by an `application_*()` function")
  }
  keras_object(paste0("applications.", module))
}
