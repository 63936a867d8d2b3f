# The package's Python warnings arrive in R as R warnings of their own class
# (issue 10, defect 9), so withCallingHandlers(warning = ) and
# tryCatch(<class> = ) see them.

collect_warnings <- function(expr) {
  seen <- list()
  withCallingHandlers(expr, warning = function(w) {
    seen[[length(seen) + 1L]] <<- w
    invokeRestart("muffleWarning")
  })
  seen
}

classed <- function(seen, class) Filter(function(w) inherits(w, class), seen)

expect_warning_class <- function(seen, class) {
  found <- classed(seen, class)
  expect_length(found, 1)
  expect_identical(class(found[[1]]),
                   c(class, "kerasbackup_warning", "warning", "condition"))
  found[[1]]
}

# A finished run that keeps two checkpoints, the newest of them damaged.
damaged_pair <- function() {
  dir <- file.path(withr::local_tempdir(.local_envir = parent.frame()), "backup")
  data <- toy_data()
  toy_model() %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                      callbacks = list(callback_backup_and_restore(
                        dir, delete_checkpoint = FALSE, double_checkpoint = TRUE)))
  info <- backup_info(dir)
  writeBin(raw(5), file.path(info$path[nrow(info)], "arrays.bin"))
  dir
}

refit <- function(dir, ...) {
  data <- toy_data()
  toy_model() %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                      callbacks = list(callback_backup_and_restore(dir, ...)))
}

test_that("a fallback to the older checkpoint is an R warning of its own class", {
  skip_if_no_python()
  seen <- collect_warnings(refit(damaged_pair(), double_checkpoint = TRUE))
  w <- expect_warning_class(seen, "kerasbackup_checkpoint_fallback_warning")
  expect_match(conditionMessage(w), "^CheckpointFallbackWarning: ")
  expect_match(conditionMessage(w), "arrays.bin: truncated", fixed = TRUE)

  if (beside_keras3()) {
    # Inside keras3's fit() the warning comes while Python runs, and a
    # tryCatch() handler cannot unwind R through Python's frames: it is shown
    # as R shows a warning, and training goes on.
    shown <- utils::capture.output(type = "message", caught <- tryCatch(
      refit(damaged_pair(), double_checkpoint = TRUE),
      kerasbackup_checkpoint_fallback_warning = function(w) "caught"
    ))
    expect_s3_class(caught, "keras_training_history")
    expect_match(paste(shown, collapse = "\n"),
                 "Warning message:\nCheckpointFallbackWarning: ", fixed = TRUE)
  } else {
    caught <- tryCatch(
      refit(damaged_pair(), double_checkpoint = TRUE),
      kerasbackup_checkpoint_fallback_warning = function(w) "caught"
    )
    expect_identical(caught, "caught")
  }
})

test_that("a lock taken over from a dead process is an R warning of its own class", {
  skip_if_no_python()
  skip_on_os("windows")
  dir <- withr::local_tempdir()
  writeLines('{"kerasbackup": true, "format_version": 1}', file.path(dir, ".kerasbackup"))
  # A pid that cannot be in use: pid_max itself is never handed out.
  dead <- as.integer(readLines("/proc/sys/kernel/pid_max"))
  writeLines(sprintf('{"pid": %d, "host": "%s", "started": "2026-01-01T00:00:00Z"}',
                     dead, Sys.info()[["nodename"]]), file.path(dir, ".lock"))
  seen <- collect_warnings(refit(dir))
  w <- expect_warning_class(seen, "kerasbackup_stale_lock_warning")
  expect_match(conditionMessage(w), paste("taking over the lock of process", dead),
               fixed = TRUE)
})

test_that("a restore that cannot place a callback's state is a resume warning", {
  skip_if_no_python()
  data <- toy_data()
  dir <- file.path(withr::local_tempdir(), "backup")
  stopper <- new_callback_class(
    "Stopper",
    on_epoch_begin = function(epoch, logs = NULL) if (epoch == 2) stop("stop")
  )
  expect_error(
    toy_model() %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                        callbacks = list(callback_backup_and_restore(dir),
                                         callback_early_stopping(patience = 5),
                                         stopper())),
    class = "python.builtin.RuntimeError")
  seen <- collect_warnings(refit(dir))
  w <- expect_warning_class(seen, "kerasbackup_resume_warning")
  expect_match(conditionMessage(w), "No matching callback for the saved state of: EarlyStopping",
               fixed = TRUE)
})

test_that("a failed save with on_save_error = 'warn' is an R warning of its own class", {
  skip_if_no_python()
  invisible(kerasbackup:::py_kb())
  reticulate::py_run_string("
import errno, os, sys
def _kb_disk_full(phase, info):
    if phase == 'arrays_written':
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
_kb_previous_hook = sys.modules['kerasbackup.store'].set_phase_hook(_kb_disk_full)
")
  on.exit(reticulate::py_run_string(
    "sys.modules['kerasbackup.store'].set_phase_hook(_kb_previous_hook)"), add = TRUE)
  dir <- file.path(withr::local_tempdir(), "backup")
  # delete_checkpoint = FALSE: every save is awaited (with TRUE, a save still
  # running at the end may be cancelled, its checkpoint being deleted anyway).
  seen <- collect_warnings(refit(dir, on_save_error = "warn", delete_checkpoint = FALSE))
  found <- classed(seen, "kerasbackup_save_error_warning")
  expect_length(found, 3)  # the saves after epochs 1, 2 and 3
  for (i in seq_along(found)) {
    expect_identical(class(found[[i]]), c("kerasbackup_save_error_warning",
                                          "kerasbackup_warning", "warning", "condition"))
    expect_match(conditionMessage(found[[i]]),
                 sprintf("(to resume at epoch %d after batch 0)", i + 1L), fixed = TRUE)
  }
  expect_match(conditionMessage(found[[1]]), "No space left on device", fixed = TRUE)
  expect_match(conditionMessage(found[[1]]), "Training goes on", fixed = TRUE)
})

test_that("every Python warning class of the package has an R class", {
  skip_if_no_python()
  py_names <- vapply(reticulate::import("kerasbackup.errors")$WARNING_CLASSES,
                     function(cls) cls$`__name__`, character(1))
  expect_setequal(names(kerasbackup:::kerasbackup_warning_classes), py_names)
})

test_that("other Python warnings are not turned into R warnings", {
  skip_if_no_python()
  kerasbackup:::py_kb()
  seen <- collect_warnings(kerasbackup:::with_py_errors(reticulate::py_run_string(
    "import warnings; warnings.warn('not ours', UserWarning)")))
  expect_length(seen, 0)
})
