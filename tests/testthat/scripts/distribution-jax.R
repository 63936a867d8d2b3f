# One process joining a (one-process) JAX job with distribution_initialize(),
# then an R fit() with the callback, data-parallel over 2 host devices; for
# test-distribution.R.
#
# Usage: Rscript distribution-jax.R <helper-kerasbackup.R> <out.rds>
suppressPackageStartupMessages(library(kerasbackup))

args <- commandArgs(trailingOnly = TRUE)
invisible(backup_info(tempfile()))  # Python up, Keras not imported yet
use_backend("jax")

reticulate::py_run_string(paste(
  "import socket", "s = socket.socket()", "s.bind(('127.0.0.1', 0))",
  "free_port = s.getsockname()[1]", "s.close()", sep = "\n"))
port <- reticulate::py$free_port
distribution_initialize(paste0("127.0.0.1:", port), num_processes = 1,
                        process_id = 0, timeout = 30)
# The helpers import Keras, which beside keras3 starts JAX: only now.
source(args[[1]])  # toy_data(), toy_model()
keras <- kerasbackup:::py_keras()
data <- toy_data()
model <- toy_model()
dir <- tempfile()
history <- model %>% fit(data$x, data$y, epochs = 2, batch_size = 8,
                         callbacks = list(callback_backup_and_restore(dir, save_freq = 2L)),
                         verbose = 0)
again <- tryCatch(distribution_initialize(paste0("127.0.0.1:", port), 1, 0),
                  error = function(e) class(e))
saveRDS(list(
  distribution = class(keras$distribution$distribution())[[1]],
  devices = length(keras$distribution$list_devices()),
  rows = nrow(as.data.frame(history)),
  again = again,
  cleaned_up = !dir.exists(dir)
), args[[2]])
