# A training "job" for test-preemption.R, run with Rscript.
#
# Usage: Rscript preempt.R <backup_dir> <out.rds> <result.rds> [key=value ...]
#   keys: epochs (6), save_freq ("2", "epoch" or "false"), batch_sleep (0),
#         signals ("SIGTERM,SIGUSR1"), ready (a file written at the first
#         batch, once fit()'s signal handlers are installed), hold ("true":
#         then wait there until <ready>.release exists), after ("none";
#         "busy": run R code after fit() until <out.rds>.stop exists, to
#         let the parent signal the R process itself; "usr1": send the
#         process SIGUSR1 itself after fit()), fits (1; 2 runs a short
#         fit() with preemption handlers first), preempt ("true"; "false"
#         trains without save_before_preemption), pause_save (N: the N-th
#         checkpoint write of this process stops once its data is written,
#         creates <backup_dir>.saving and waits until <backup_dir>.go-N
#         exists or the write is cancelled), signal_at (a phase of the
#         store's phase hook, e.g. "deleting": SIGTERM to itself there,
#         once), delete ("true": delete_checkpoint).
# On completion the final weights, optimizer variables and history go to
# out.rds. When fit() fails, the condition's classes and message go to
# result.rds and the error is re-raised, so Rscript exits non-zero.
suppressPackageStartupMessages(library(kerasbackup))

args <- commandArgs(trailingOnly = TRUE)
backup_dir <- args[[1]]
out <- args[[2]]
result <- args[[3]]
opts <- list(epochs = "6", save_freq = "2", batch_sleep = "0",
             signals = "SIGTERM,SIGUSR1", ready = "", hold = "false", after = "none",
             fits = "1", preempt = "true", pause_save = "", signal_at = "",
             delete = "true")
for (kv in args[-(1:3)]) {
  key <- sub("=.*$", "", kv)
  opts[[key]] <- sub("^[^=]*=", "", kv)
}
save_freq <- switch(opts$save_freq, epoch = "epoch", false = FALSE,
                    as.integer(opts$save_freq))

set.seed(42)
n <- 70
x <- matrix(rnorm(n * 6), n, 6)
y <- matrix(x %*% (1:6 / 6) + rnorm(n, sd = 0.1), n, 1)

set_random_seed(1)
model <- keras_model_sequential(input_shape = 6) %>%
  layer_dense(16, activation = "relu") %>%
  layer_dropout(0.25) %>%
  layer_dense(1)
model %>% compile(optimizer = optimizer_adam(0.01), loss = "mse",
                  metrics = "mae")

# Pacing sleeps in Python: an R Sys.sleep() would wait in R's select(),
# which takes SIGINT with a handler of its own (an R interrupt).
py_time <- reticulate::import("time")
pace <- new_callback_class(
  "Pace",
  on_train_batch_begin = function(batch, logs = NULL) {
    if (nzchar(opts$ready) && !file.exists(opts$ready)) {
      writeLines(as.character(Sys.getpid()), paste0(opts$ready, ".tmp"))
      file.rename(paste0(opts$ready, ".tmp"), opts$ready)
      # The parent signals at this known point, then lets the job go on.
      while (opts$hold == "true" && !file.exists(paste0(opts$ready, ".release")))
        py_time$sleep(0.01)
    }
  },
  on_train_batch_end = function(batch, logs = NULL) {
    if (opts$batch_sleep != "0") py_time$sleep(as.numeric(opts$batch_sleep))
  }
)

backup <- callback_backup_and_restore(
  backup_dir, save_freq = save_freq, delete_checkpoint = opts$delete == "true",
  save_before_preemption = opts$preempt == "true",
  preemption_signals = strsplit(opts$signals, ",")[[1]])
callbacks <- list(
  pace(),
  callback_early_stopping(monitor = "val_loss", patience = 10,
                          min_delta = 0.3),
  callback_reduce_lr_on_plateau(monitor = "val_loss", patience = 1,
                                factor = 0.5, min_delta = 0.35, cooldown = 1,
                                min_lr = 1e-5),
  backup
)

# Waiting for states, through the store's public phase hook.
python_dir <- system.file("python", package = "kerasbackup")
if (nzchar(opts$pause_save)) {
  testing <- reticulate::import_from_path("kerasbackup.testing", path = python_dir)
  reticulate::py_run_string("
def _kb_cancelled():
    saver = _kb_backup.saver
    return saver is not None and saver.cancelled
")
  reticulate::py_set_attr(reticulate::import_main(convert = FALSE), "_kb_backup", backup)
  invisible(testing$PauseSave(paste0(backup_dir, ".saving"), paste0(backup_dir, ".go-{n}"),
                    saves = list(as.integer(opts$pause_save)),
                    # Python objects, not R functions: hooks run on the saver thread.
                    cancelled = reticulate::py_eval("_kb_cancelled", convert = FALSE))$install())
}
if (nzchar(opts$signal_at)) {
  store <- reticulate::import_from_path("kerasbackup.store", path = python_dir)
  reticulate::py_run_string(sprintf("
import os, signal
_kb_sent = []
def _kb_signal_at(phase, info):
    if phase == %s and not _kb_sent:
        _kb_sent.append(phase)
        os.kill(os.getpid(), signal.SIGTERM)
", deparse(opts$signal_at)))
  store$set_phase_hook(reticulate::py_eval("_kb_signal_at", convert = FALSE))
}

# fits=2: an earlier fit() in the same session installed and restored the
# handlers once already.
for (i in seq_len(as.integer(opts$fits) - 1L)) {
  fit(keras_model_sequential(input_shape = 6) %>% layer_dense(1) %>%
        compile(optimizer = "sgd", loss = "mse"), x, y, epochs = 1, verbose = 0,
      callbacks = list(callback_backup_and_restore(
        paste0(backup_dir, "-pre", i), save_freq = FALSE,
        save_before_preemption = TRUE,
        preemption_signals = strsplit(opts$signals, ",")[[1]])))
}

history <- tryCatch(
  model %>% fit(x, y, batch_size = 8, epochs = as.integer(opts$epochs),
                validation_split = 0.2, shuffle = TRUE, verbose = 0,
                callbacks = callbacks),
  error = function(e) {
    saveRDS(list(class = class(e), message = conditionMessage(e)), result)
    stop(e)
  }
)

saveRDS(list(
  weights = get_weights(model),
  variables = lapply(model$variables, function(v) v$numpy()),
  optimizer = lapply(model$optimizer$variables, function(v) v$numpy()),
  history = lapply(model$history$history, unlist),
  epoch = unlist(model$history$epoch)
), out)

if (opts$after == "busy") {
  # Busy R code, so that R's own handlers decide what a signal does (a
  # Sys.sleep() would wait in select(), which has a SIGINT handler of its
  # own). It ends only when the parent gives up waiting for the signal.
  writeLines("fit done", paste0(out, ".done"))
  stop_file <- paste0(out, ".stop")
  while (!file.exists(stop_file)) for (i in seq_len(1e5)) NULL
  writeLines("still running", paste0(out, ".survived"))
} else if (opts$after == "usr1") {
  # R's SIGUSR1 handler saves the workspace from inside the signal handler,
  # so it deadlocks if the signal lands while this thread is in malloc(),
  # as it can in busy R code. Sent from here, it is handled as kill()
  # returns (a signal a thread sends its own process goes to that thread,
  # POSIX), never inside malloc().
  writeLines("fit done", paste0(out, ".done"))
  tools::pskill(Sys.getpid(), tools::SIGUSR1)
  writeLines("still running", paste0(out, ".survived"))
}
