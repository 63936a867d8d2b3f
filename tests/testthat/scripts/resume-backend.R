# An R fit() interrupted by an R stop() mid-epoch and resumed, on one Keras
# backend, against an uninterrupted fit(); for test-resume-backends.R.
#
# Usage: Rscript resume-backend.R <backend> <helper-kerasbackup.R> <out.rds>
# Writes a list: the backend Keras runs on and, for each part of the state,
# whether the resumed run ends identical to the uninterrupted one.
suppressPackageStartupMessages(library(kerasbackup))

args <- commandArgs(trailingOnly = TRUE)
# Python in use before the backend is chosen: only importing Keras fixes it.
invisible(backup_info(tempfile()))
use_backend(args[[1]])
source(args[[2]])  # toy_data(), toy_model(), train(), interrupt_at(), ...

reference <- train(tempfile())
dir <- tempfile()
stopped <- tryCatch({
  train(dir, list(interrupt_at(3, 4)))
  FALSE
}, python.builtin.RuntimeError = function(e) TRUE)
info <- backup_info(dir)
resumed <- train(dir)

saveRDS(list(
  backend = kerasbackup:::py_keras()$config$backend(),
  stopped = stopped,
  checkpoint = c(epoch = info$epoch, batch = info$batch, verified = info$verified),
  weights = identical(get_weights(resumed$model), get_weights(reference$model)),
  optimizer = identical(optimizer_state(resumed$model),
                        optimizer_state(reference$model)),
  history = identical(resumed$history$metrics, reference$history$metrics),
  rows = c(resumed = nrow(as.data.frame(resumed$history)),
           reference = nrow(as.data.frame(reference$history))),
  callbacks = identical(callback_state(resumed$callbacks),
                        callback_state(reference$callbacks)),
  cleaned_up = !dir.exists(dir)
), args[[3]])
