msg <- function(arg, accepted, received) {
  sprintf("`%s` must be %s.\nx Received: `%s`.", arg, accepted, received)
}
dir_ok <- "a single non-empty string (a directory path)"
freq_ok <- '"epoch", a positive whole number, or `FALSE`'
flag_ok <- "`TRUE` or `FALSE`"

bad_inputs <- list(
  list(args = list(backup_dir = NULL), msg = msg("backup_dir", dir_ok, "NULL")),
  list(args = list(backup_dir = ""), msg = msg("backup_dir", dir_ok, '""')),
  list(args = list(backup_dir = NA), msg = msg("backup_dir", dir_ok, "NA")),
  list(args = list(backup_dir = NA_character_),
       msg = msg("backup_dir", dir_ok, "NA_character_")),
  list(args = list(backup_dir = c("a", "b")),
       msg = msg("backup_dir", dir_ok, 'c("a", "b")')),
  list(args = list(backup_dir = 1), msg = msg("backup_dir", dir_ok, "1")),
  list(args = list(backup_dir = "d", save_freq = 0),
       msg = msg("save_freq", freq_ok, "0")),
  list(args = list(backup_dir = "d", save_freq = -1),
       msg = msg("save_freq", freq_ok, "-1")),
  list(args = list(backup_dir = "d", save_freq = 1.5),
       msg = msg("save_freq", freq_ok, "1.5")),
  list(args = list(backup_dir = "d", save_freq = TRUE),
       msg = msg("save_freq", freq_ok, "TRUE")),
  list(args = list(backup_dir = "d", save_freq = NA),
       msg = msg("save_freq", freq_ok, "NA")),
  list(args = list(backup_dir = "d", save_freq = "batch"),
       msg = msg("save_freq", freq_ok, '"batch"')),
  list(args = list(backup_dir = "d", save_freq = c(1, 2)),
       msg = msg("save_freq", freq_ok, "c(1, 2)")),
  list(args = list(backup_dir = "d", save_freq = NULL),
       msg = msg("save_freq", freq_ok, "NULL")),
  list(args = list(backup_dir = "d", save_freq = Inf),
       msg = msg("save_freq", freq_ok, "Inf")),
  list(args = list(backup_dir = "d", delete_checkpoint = "yes"),
       msg = msg("delete_checkpoint", flag_ok, '"yes"')),
  list(args = list(backup_dir = "d", delete_checkpoint = NA),
       msg = msg("delete_checkpoint", flag_ok, "NA")),
  list(args = list(backup_dir = "d", delete_checkpoint = c(TRUE, FALSE)),
       msg = msg("delete_checkpoint", flag_ok, "c(TRUE, FALSE)")),
  list(args = list(backup_dir = "d", double_checkpoint = 1),
       msg = msg("double_checkpoint", flag_ok, "1")),
  list(args = list(backup_dir = "d", on_save_error = "ignore"),
       msg = msg("on_save_error", '"stop" or "warn"', '"ignore"')),
  list(args = list(backup_dir = "d", save_before_preemption = TRUE,
                   preemption_signals = "SIGKILL"),
       msg = msg("preemption_signals", paste0(
         '`NULL` ("SIGTERM" and "SIGUSR1") or a character vector of signal ',
         'names from "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGHUP", ',
         '"SIGQUIT", "SIGALRM", "SIGXCPU"'),
         '"SIGKILL"'))
)

test_that("bad arguments stop with a classed error naming argument, value and what is accepted", {
  for (case in bad_inputs) {
    err <- plain_message(do.call(callback_backup_and_restore, case$args))
    expect_identical(err$message, case$msg)
    expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
    expect_s3_class(err$cnd, "kerasbackup_error")
    expect_identical(err$cnd$arg, names(case$args)[[length(case$args)]])
  }
})

test_that("a missing backup_dir is reported like NULL", {
  err <- plain_message(callback_backup_and_restore())
  expect_identical(err$message, msg("backup_dir", dir_ok, "NULL"))
})

test_that("save_freq = FALSE without preemption saving is rejected with the reason", {
  err <- plain_message(callback_backup_and_restore("d", save_freq = FALSE))
  expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
  expect_match(err$message,
               "`save_freq = FALSE` needs `save_before_preemption = TRUE`.",
               fixed = TRUE)
  expect_match(err$message, "it would never save anything", fixed = TRUE)
})

test_that("validation happens in R, before Python is started", {
  skip_if_not_installed("callr")
  out <- callr::r(function() {
    library(kerasbackup)
    err <- tryCatch(callback_backup_and_restore(""), error = function(e) e)
    list(class = class(err), python = reticulate::py_available())
  })
  expect_true("kerasbackup_invalid_argument" %in% out$class)
  expect_false(out$python)
})

test_that("good arguments return the package's own Python callback", {
  skip_if_no_python()
  dir <- withr::local_tempdir()
  for (freq in list("epoch", 5, 5L)) {
    cb <- callback_backup_and_restore(dir, save_freq = freq)
    expect_s3_class(cb, "kerasbackup.callback.BackupAndRestore")
    expect_s3_class(cb, "keras.src.callbacks.callback.Callback")
    expect_false(inherits(cb, "keras.src.callbacks.backup_and_restore.BackupAndRestore"))
  }
  expect_identical(callback_backup_and_restore(dir, save_freq = 5)$save_freq, 5L)
  cb <- callback_backup_and_restore(dir, save_freq = FALSE,
                                    save_before_preemption = TRUE)
  expect_false(cb$save_freq)
  cb <- callback_backup_and_restore(dir)
  expect_identical(cb$save_freq, "epoch")
  expect_true(cb$delete_checkpoint)
  expect_false(cb$double_checkpoint)
})

test_that("the Python class validates the same values itself", {
  skip_if_no_python()
  kb <- kerasbackup:::py_kb()
  for (bad in list(0L, -1L, 1.5, TRUE, "batch")) {
    err <- tryCatch(kb$BackupAndRestore("d", save_freq = bad),
                    error = function(e) kerasbackup:::as_py_condition(e))
    expect_s3_class(err, "python.builtin.ValueError")
    expect_match(conditionMessage(err), "Invalid value for argument `save_freq`",
                 fixed = TRUE)
  }
})
