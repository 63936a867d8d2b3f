#' Keras' built-in callbacks
#'
#' Early stopping, learning-rate reduction on a plateau and model
#' checkpoints, with keras3's names and defaults. Their state (best value,
#' patience counters, best weights) is saved and restored by
#' [callback_backup_and_restore()].
#'
#' @param monitor Quantity to monitor, e.g. `"val_loss"`.
#' @param min_delta Minimum change that counts as an improvement.
#' @param patience Epochs with no improvement before acting.
#' @param verbose 0 or 1.
#' @param mode `"auto"`, `"min"` or `"max"`.
#' @param baseline Baseline value for the monitored quantity.
#' @param restore_best_weights Whether to restore the best weights at the end.
#' @param start_from_epoch Epochs to wait before starting to monitor.
#' @param factor Factor by which the learning rate is reduced.
#' @param cooldown Epochs to wait after a reduction.
#' @param min_lr Lower bound on the learning rate.
#' @param filepath Path to save the model or weights to.
#' @param save_best_only Only save when the monitored quantity improves.
#' @param save_weights_only Only save the weights.
#' @param save_freq `"epoch"` or an integer number of batches.
#' @param initial_value_threshold Initial best value.
#' @returns A Keras callback.
#' @family callbacks
#' @name callbacks
#' @examplesIf kerasbackup:::python_ready()
#' callback_early_stopping(patience = 2)
#' callback_reduce_lr_on_plateau(factor = 0.5)
#' callback_model_checkpoint(tempfile(fileext = ".weights.h5"),
#'                           save_weights_only = TRUE)
NULL

#' @rdname callbacks
#' @export
callback_early_stopping <- function(monitor = "val_loss", min_delta = 0,
                                    patience = 0L, verbose = 0L, mode = "auto",
                                    baseline = NULL,
                                    restore_best_weights = FALSE,
                                    start_from_epoch = 0L) {
  with_py_errors(py_keras()$callbacks$EarlyStopping(
    monitor = monitor, min_delta = min_delta, patience = as.integer(patience),
    verbose = as.integer(verbose), mode = mode, baseline = baseline,
    restore_best_weights = restore_best_weights,
    start_from_epoch = as.integer(start_from_epoch)
  ))
}

#' @rdname callbacks
#' @export
callback_reduce_lr_on_plateau <- function(monitor = "val_loss", factor = 0.1,
                                          patience = 10L, verbose = 0L,
                                          mode = "auto", min_delta = 1e-04,
                                          cooldown = 0L, min_lr = 0) {
  with_py_errors(py_keras()$callbacks$ReduceLROnPlateau(
    monitor = monitor, factor = factor, patience = as.integer(patience),
    verbose = as.integer(verbose), mode = mode, min_delta = min_delta,
    cooldown = as.integer(cooldown), min_lr = min_lr
  ))
}

#' @rdname callbacks
#' @export
callback_model_checkpoint <- function(filepath, monitor = "val_loss",
                                      verbose = 0L, save_best_only = FALSE,
                                      save_weights_only = FALSE, mode = "auto",
                                      save_freq = "epoch",
                                      initial_value_threshold = NULL) {
  if (is.numeric(save_freq)) save_freq <- as.integer(save_freq)
  with_py_errors(py_keras()$callbacks$ModelCheckpoint(
    filepath = path.expand(filepath), monitor = monitor,
    verbose = as.integer(verbose), save_best_only = save_best_only,
    save_weights_only = save_weights_only, mode = mode, save_freq = save_freq,
    initial_value_threshold = initial_value_threshold
  ))
}
