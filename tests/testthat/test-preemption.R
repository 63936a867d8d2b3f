# Preemption under Rscript: a signal makes fit() finish the batch, save and
# stop with a `kerasbackup_preempted` error; the script exits non-zero and a
# rerun ends bit-identical to an uninterrupted run. The training job is
# scripts/preempt.R, run with Rscript in the background through sh (base R
# only); signals are sent with tools::pskill() to the pid the job writes
# once fit()'s handlers are installed. The tests wait for states (files the
# job writes, a save the job holds until released), never for time.

rscript <- function() file.path(R.home("bin"), "Rscript")

# Starts the job; returns paths of its files. `wd` is its working directory.
start_job <- function(dir, name, backup_dir, ..., wd = dir) {
  job <- list(
    out = file.path(dir, paste0(name, ".rds")),
    result = file.path(dir, paste0(name, "-result.rds")),
    ready = file.path(dir, paste0(name, ".ready")),
    status = file.path(dir, paste0(name, ".status")),
    log = file.path(dir, paste0(name, ".log"))
  )
  args <- c(test_path("scripts", "preempt.R"), backup_dir, job$out,
            job$result, paste0("ready=", job$ready), ...)
  cmd <- paste(
    "cd", shQuote(wd), "&&", shQuote(rscript()),
    paste(shQuote(normalizePath(args[1])), paste(shQuote(args[-1]), collapse = " ")),
    ">", shQuote(job$log), "2>&1; echo $? >", shQuote(paste0(job$status, ".tmp")),
    "&& mv", shQuote(paste0(job$status, ".tmp")), shQuote(job$status)
  )
  system2("sh", c("-c", shQuote(cmd)), wait = FALSE)
  job
}

wait_until <- function(cond, job, timeout = 300) {
  deadline <- Sys.time() + timeout
  while (!cond()) {
    if (file.exists(job$status)) {
      stop("the job ended early:\n", paste(readLines(job$log), collapse = "\n"))
    }
    if (Sys.time() > deadline) stop("timed out")
    Sys.sleep(0.01)
  }
}

job_pid <- function(job) as.integer(readLines(job$ready, warn = FALSE)[1])

wait_status <- function(job, timeout = 300, on_timeout = NULL) {
  deadline <- Sys.time() + timeout
  while (!file.exists(job$status)) {
    if (Sys.time() > deadline) {
      if (is.null(on_timeout)) stop("timed out")
      on_timeout()
      on_timeout <- NULL
      deadline <- Sys.time() + timeout
    }
    Sys.sleep(0.02)
  }
  as.integer(readLines(job$status)[1])
}

release <- function(path) writeLines("go", path)

# A seed for the test's own random choices, printed so a failure can be replayed.
test_seed <- function(name) {
  seed <- as.integer(Sys.getenv("KB_TEST_SEED", as.integer(Sys.time()) %% 100000L))
  message(name, ": random seed ", seed, " (set KB_TEST_SEED=", seed, " to replay)")
  seed
}

latest_checkpoint <- function(backup_dir) {
  info <- kerasbackup::backup_info(backup_dir)
  if (nrow(info) == 0) NULL else c(info$epoch[nrow(info)], info$batch[nrow(info)])
}

expect_same_training <- function(out, ref) {
  a <- readRDS(out)
  b <- readRDS(ref)
  expect_identical(a$variables, b$variables)
  expect_identical(a$weights, b$weights)
  expect_identical(a$optimizer, b$optimizer)
  expect_identical(a$history, b$history)
  expect_identical(a$epoch, b$epoch)
}

job_args <- c("epochs=5", "save_freq=3", "batch_sleep=0.03")

reference_run <- local({
  ref <- NULL
  function() {
    if (is.null(ref)) {
      dir <- tempfile("kb-ref-")
      dir.create(dir)
      job <- start_job(dir, "reference", file.path(dir, "backup"), job_args)
      expect_identical(wait_status(job), 0L)
      ref <<- job$out
    }
    ref
  }
})

test_that("SIGTERM at random instants under Rscript: preempted, then an exact resume", {
  skip_if_no_python()
  skip_on_os("windows")
  withr::local_seed(test_seed("SIGTERM at random instants"))
  dir <- withr::local_tempdir()
  backup <- file.path(dir, "backup")
  stops <- list()
  for (i in 1:2) {
    before <- latest_checkpoint(backup)
    # The 1st save is held (run 2: the signal lands while it is in flight),
    # or the 3rd (a gate: however slowly this test runs, the job cannot
    # finish before the signal).
    held <- if (i == 2) 1L else 3L
    job <- start_job(dir, paste0("run", i), backup, job_args,
                     paste0("pause_save=", held))
    wait_until(function() file.exists(job$ready), job)
    if (i == 2) {
      # During a save: its data is written, nothing is published yet.
      wait_until(function() file.exists(paste0(backup, ".saving")), job)
    } else {
      wait_until(function() !identical(latest_checkpoint(backup), before) &&
                   !is.null(latest_checkpoint(backup)), job)
      # Any instant is fine: the outcome must not depend on it.
      Sys.sleep(stats::runif(1, 0, 0.3))
    }
    tools::pskill(job_pid(job), tools::SIGTERM)
    release(paste0(backup, ".go-", held))
    expect_identical(wait_status(job), 1L)
    res <- readRDS(job$result)
    expect_true("kerasbackup_preempted" %in% res$class)
    expect_match(res$message, "Training was preempted by SIGTERM", fixed = TRUE)
    expect_match(res$message, backup, fixed = TRUE)
    expect_match(res$message, "resumes at epoch [0-9]+, after batch [0-9]+")
    expect_match(paste(readLines(job$log), collapse = "\n"),
                 "kerasbackup: SIGTERM received; checkpoint published")
    info <- kerasbackup::backup_info(backup)
    expect_true(all(info$verified))
    last <- latest_checkpoint(backup)
    expect_match(res$message, sprintf("resumes at epoch %d, after batch %d",
                                      last[1], last[2]), fixed = TRUE)
    stops[[i]] <- last
  }
  expect_false(identical(stops[[1]], stops[[2]]))
  job <- start_job(dir, "final", backup, job_args)
  expect_identical(wait_status(job), 0L)
  expect_same_training(job$out, reference_run())
  expect_false(dir.exists(backup))
})

test_that("a second SIGTERM during the preemption save aborts; the checkpoint stays", {
  skip_if_no_python()
  skip_on_os("windows")
  dir <- withr::local_tempdir()
  backup <- file.path(dir, "backup")
  args <- c("epochs=5", "save_freq=false", "batch_sleep=0.03")
  job <- start_job(dir, "first", backup, args, "hold=true")
  wait_until(function() file.exists(job$ready), job)
  tools::pskill(job_pid(job), tools::SIGTERM)
  file.create(paste0(job$ready, ".release"))
  expect_identical(wait_status(job), 1L)
  first <- latest_checkpoint(backup)
  expect_false(is.null(first))

  # The preemption save is this process's first: it is held, and a second
  # SIGTERM lands while it is in flight.
  job <- start_job(dir, "second", backup, args, "pause_save=1", "hold=true")
  wait_until(function() file.exists(job$ready), job)
  tools::pskill(job_pid(job), tools::SIGTERM)
  file.create(paste0(job$ready, ".release"))
  wait_until(function() file.exists(paste0(backup, ".saving")), job)
  tools::pskill(job_pid(job), tools::SIGTERM)
  expect_identical(wait_status(job), 1L)
  res <- readRDS(job$result)
  expect_true("kerasbackup_preempted" %in% res$class)
  expect_match(res$message, "SIGTERM received again: stopping at once",
               fixed = TRUE)
  info <- kerasbackup::backup_info(backup)
  expect_identical(nrow(info), 1L)
  expect_identical(c(info$epoch, info$batch), first)
  expect_true(all(info$verified))

  job <- start_job(dir, "final", backup, args)
  expect_identical(wait_status(job), 0L)
  expect_same_training(job$out, reference_run())
})

test_that("a signal during the final clean-up ends as preemption, with a non-zero exit", {
  # Issue 10, defect 8: not swallowed; a checkpoint of the end state is
  # kept, so the rerun returns at once.
  skip_if_no_python()
  skip_on_os("windows")
  dir <- withr::local_tempdir()
  backup <- file.path(dir, "backup")
  args <- c("epochs=2", "save_freq=epoch")
  job <- start_job(dir, "cleanup", backup, args, "signal_at=deleting")
  expect_identical(wait_status(job), 1L)
  res <- readRDS(job$result)
  expect_true("kerasbackup_preempted" %in% res$class)
  info <- kerasbackup::backup_info(backup)
  expect_identical(c(info$epoch, info$batch), c(3L, 0L))
  expect_true(all(info$verified))
  job <- start_job(dir, "rerun", backup, args)
  expect_identical(wait_status(job), 0L)
  expect_identical(readRDS(job$out)$epoch, c(0L, 1L))
})

test_that("a signal during the final save ends as preemption, with a non-zero exit", {
  skip_if_no_python()
  skip_on_os("windows")
  dir <- withr::local_tempdir()
  backup <- file.path(dir, "backup")
  # Two epochs, delete = false: the second save is the final one.
  job <- start_job(dir, "final-save", backup, "epochs=2", "save_freq=epoch",
                   "delete=false", "pause_save=2")
  wait_until(function() file.exists(paste0(backup, ".saving")), job)
  tools::pskill(job_pid(job), tools::SIGTERM)
  release(paste0(backup, ".go-2"))
  expect_identical(wait_status(job), 1L)
  res <- readRDS(job$result)
  expect_true("kerasbackup_preempted" %in% res$class)
  info <- kerasbackup::backup_info(backup)
  expect_identical(c(info$epoch, info$batch), c(3L, 0L))
})

# The kernel's action for a signal: handler address, mask, flags (without
# the SA_RESTORER glibc adds on each write), read with sigaction(2).
sigaction_state <- function(signals = c("SIGINT", "SIGTERM", "SIGUSR1")) {
  reticulate::py_run_string("
import ctypes, ctypes.util, signal as _signal
def _kb_sigaction(name):
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    buf = ctypes.create_string_buffer(512)
    libc.sigaction(int(getattr(_signal, name)), None, buf)
    raw = buf.raw
    return '%x/%s/%x' % (int.from_bytes(raw[0:8], 'little'), raw[8:16].hex(),
                         int.from_bytes(raw[136:140], 'little') & ~0x04000000)
")
  main <- reticulate::import_main()
  vapply(signals, function(s) main$`_kb_sigaction`(s), "")
}

test_that("R's own signal handlers are back after fit(), twice over", {
  skip_if_no_python()
  skip_on_os("windows")
  invisible(kerasbackup:::py_kb())
  before <- sigaction_state()
  set.seed(1)
  x <- matrix(rnorm(60), 20, 3)
  y <- matrix(rowSums(x), 20, 1)
  for (i in 1:2) {
    model <- keras_model_sequential(input_shape = 3) %>% layer_dense(1)
    model %>% compile(optimizer = "sgd", loss = "mse")
    model %>% fit(x, y, epochs = 1, verbose = 0, callbacks = list(
      callback_backup_and_restore(
        withr::local_tempdir(), save_freq = FALSE,
        save_before_preemption = TRUE,
        preemption_signals = c("SIGTERM", "SIGUSR1", "SIGINT"))))
    expect_identical(sigaction_state(), before)
  }
})

test_that("after two fit()s in Rscript, SIGUSR1 and SIGINT do what R does", {
  skip_if_no_python()
  skip_on_os("windows")
  dir <- withr::local_tempdir()
  # R's SIGUSR1 handler saves the workspace and quits with status 2; its
  # SIGINT handler interrupts the R code ("Execution halted", status 1).
  for (sig in c("USR1", "INT")) {
    wd <- file.path(dir, sig)
    dir.create(wd)
    # R's SIGUSR1 handler saves the workspace inside the signal handler,
    # which deadlocks if the signal lands in malloc(): the job sends it to
    # itself (see scripts/preempt.R). R's SIGINT handler only sets a flag,
    # and busy R code must notice it: the signal comes from here.
    job <- start_job(dir, sig, file.path(dir, paste0("backup-", sig)),
                     "epochs=1", "fits=2",
                     if (sig == "USR1") "after=usr1" else "after=busy",
                     "signals=SIGTERM,SIGUSR1,SIGINT", wd = wd)
    # fit() has returned and put R's handlers back; R code runs until the
    # signal ends it (or, should it not, until we give up waiting).
    if (sig == "INT") {
      wait_until(function() file.exists(paste0(job$out, ".done")), job)
      tools::pskill(job_pid(job), tools::SIGINT)
    }
    status <- wait_status(job, on_timeout = function() {
      writeLines("stop", paste0(job$out, ".stop"))
    })
    expect_true(file.exists(paste0(job$out, ".done")))
    expect_false(file.exists(paste0(job$out, ".survived")))
    if (sig == "USR1") {
      expect_identical(status, 2L)
      expect_true(file.exists(file.path(wd, ".RData")))
    } else {
      expect_identical(status, 1L)
      expect_match(paste(readLines(job$log), collapse = "\n"), "Execution halted")
    }
  }
})
