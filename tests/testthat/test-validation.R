msg <- function(arg, accepted, received) {
  sprintf("`%s` must be %s.\nx Received: `%s`.", arg, accepted, received)
}
dir_ok <- "a single non-empty string (a directory path or a URL)"
freq_ok <- '"epoch", a positive whole number, or `FALSE`'
flag_ok <- "`TRUE` or `FALSE`"
opts_ok <- "`NULL` or a named list of fsspec options"
opts_local <- paste0('`NULL` for a local `backup_dir` (they apply to URLs such as ',
                     '"s3://bucket/prefix")')

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
         '"SIGKILL"')),
  list(args = list(backup_dir = "s3://b/run", lease_wait = -1),
       msg = msg("lease_wait", "a number of seconds >= 0", "-1")),
  list(args = list(backup_dir = "s3://b/run", lease_wait = NA),
       msg = msg("lease_wait", "a number of seconds >= 0", "NA")),
  list(args = list(backup_dir = "s3://b/run", lease_wait = Inf),
       msg = msg("lease_wait", "a number of seconds >= 0", "Inf")),
  list(args = list(backup_dir = "s3://b/run", lease_wait = "90"),
       msg = msg("lease_wait", "a number of seconds >= 0", '"90"')),
  list(args = list(backup_dir = "s3://b/run", lease_wait = c(1, 2)),
       msg = msg("lease_wait", "a number of seconds >= 0", "c(1, 2)")),
  list(args = list(backup_dir = "s3://b/run", storage_options = "key=x"),
       msg = msg("storage_options", opts_ok, "a character")),
  list(args = list(backup_dir = "s3://b/run", storage_options = list("x")),
       msg = msg("storage_options", opts_ok, "an unnamed list of length 1")),
  list(args = list(backup_dir = "s3://b/run",
                   storage_options = list(key = "a", key = "b")),
       msg = msg("storage_options", opts_ok, "a list with names key, key")),
  list(args = list(backup_dir = "d", storage_options = list(key = "a")),
       msg = msg("storage_options", opts_local, "a list with names key"))
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

test_that("storage_options never show their values, in the message or the condition", {
  secret <- "kb-not-to-be-shown-1234"
  for (args in list(
    list("s3://b/run", storage_options = list(key = "id", secret, token = secret)),
    list(tempfile(), storage_options = list(secret = secret))
  )) {
    err <- plain_message(do.call(callback_backup_and_restore, args))
    expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
    expect_identical(err$cnd$arg, "storage_options")
    expect_false(grepl(secret, err$message, fixed = TRUE))
    expect_false(grepl(secret, paste(capture.output(str(unclass(err$cnd))),
                                     collapse = "\n"), fixed = TRUE))
  }
  err <- plain_message(backup_info("d", storage_options = list(secret = secret)))
  expect_match(err$message, opts_local, fixed = TRUE)
  expect_false(grepl(secret, err$message, fixed = TRUE))
})

test_that("a URL backup_dir is passed on untouched, a path gets ~ expanded", {
  for (url in c("s3://bucket/run-1", "gs://b/~x/y", "file:///tmp/~z")) {
    expect_identical(kerasbackup:::backup_dir_arg(url), url)
  }
  expect_identical(kerasbackup:::backup_dir_arg("~/x"), path.expand("~/x"))
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
  expect_identical(cb$lease_wait, 90)
  expect_identical(formals(callback_backup_and_restore)$lease_wait,
                   kerasbackup:::py_kb()$callback$DEFAULT_LEASE_WAIT)
  # A URL, with options (nested lists become dicts); nothing is contacted yet.
  cb <- callback_backup_and_restore(
    "s3://bucket/run-1", lease_wait = 0L,
    storage_options = list(endpoint_url = "http://127.0.0.1:9",
                           client_kwargs = list(region_name = "eu-west-1")))
  expect_identical(cb$backup_dir, "s3://bucket/run-1")
  expect_identical(cb$lease_wait, 0)
  expect_identical(cb$storage_options$client_kwargs$region_name, "eu-west-1")
})

test_that("a URL no object store can use is refused at once", {
  skip_if_no_python()
  err <- tryCatch(callback_backup_and_restore("ftp://host/run"),
                  error = function(e) e)
  expect_s3_class(err, "kerasbackup_invalid_argument")
  expect_identical(err$arg, "backup_dir")
  expect_match(conditionMessage(err), "no conditional writes", fixed = TRUE)
  err <- tryCatch(callback_backup_and_restore("s3://id:hunter2@bucket/run"),
                  error = function(e) e)
  expect_s3_class(err, "kerasbackup_invalid_argument")
  expect_match(conditionMessage(err), "credentials in the URL", fixed = TRUE)
  expect_false(grepl("hunter2", conditionMessage(err), fixed = TRUE))
  expect_false(grepl("hunter2", err$value, fixed = TRUE))
})

test_that("malformed and misspelt URLs are bad arguments of both functions", {
  skip_if_no_python()
  cases <- c("s3://b/x?y=1" = "has a query or fragment",
             "s3://b/a/../x" = "'..' path segment",
             "s3:///x" = "names no bucket",
             "ftp://b/x" = "no conditional writes",
             "s3:/kb-tests/run" = "did you mean 's3://kb-tests/run'?",
             "gs:kb-tests/run" = "did you mean 'gs://kb-tests/run'?",
             "file:/tmp/run" = "a file:///absolute/path URL",
             "s3://id@kb-tests:abc/run" = "Port could not be cast")
  for (url in names(cases)) {
    for (f in list(callback_backup_and_restore, backup_info)) {
      err <- tryCatch(f(url), error = function(e) e)
      expect_s3_class(err, "kerasbackup_invalid_argument")
      expect_identical(err$arg, "backup_dir")
      expect_match(conditionMessage(err), cases[[url]], fixed = TRUE)
    }
  }
  expect_false(dir.exists("s3:"))  # no local directory made of a typo
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
