# fit() under a tf.distribute.MirroredStrategy made from R, over 2 logical
# CPUs: interrupted by an R stop() mid-epoch and resumed, against an
# uninterrupted fit(); for test-strategy.R.
#
# Usage: Rscript strategy.R <helper-kerasbackup.R> <out.rds>
# The devices must be configured before TensorFlow starts, hence a process
# of its own. The reference and the interrupted run call fit() inside
# `with(strategy$scope(), ...)`; the resumed run calls it after the block
# that made its model has ended, as scripts often do.
split_cpu <- function() {
  tf <- reticulate::import("tensorflow")
  cpu <- tf$config$list_physical_devices("CPU")[[1]]
  tf$config$set_logical_device_configuration(
    cpu, list(tf$config$LogicalDeviceConfiguration(),
              tf$config$LogicalDeviceConfiguration()))
}
# keras3 starts TensorFlow's devices as soon as Python imports Keras (which
# importing TensorFlow does), so beside keras3 they are set up before it
# loads; kerasbackup's own front end loads no Python.
beside_keras3 <- nzchar(system.file(package = "keras3"))
if (beside_keras3) split_cpu()
suppressPackageStartupMessages(library(kerasbackup))
if (!beside_keras3) split_cpu()

args <- commandArgs(trailingOnly = TRUE)
source(args[[1]])  # toy_data(), toy_model(), interrupt_at(), same_training()

tf <- reticulate::import("tensorflow")
strategy <- tf$distribute$MirroredStrategy(list("/cpu:0", "/cpu:1"))

train_mirrored <- function(dir, extra = list(), fit_in_scope = TRUE) {
  data <- toy_data()
  model <- with(strategy$scope(), toy_model())
  callbacks <- c(list(callback_backup_and_restore(dir, save_freq = 2L)), extra)
  run <- function() {
    model %>% fit(data$x, data$y, epochs = 5, batch_size = 6,
                  validation_split = 0.2, shuffle = TRUE,
                  callbacks = callbacks, verbose = 0)
  }
  history <- if (fit_in_scope) with(strategy$scope(), run()) else run()
  list(model = model, history = history)
}

reference <- train_mirrored(tempfile())
dir <- tempfile()
stopped <- tryCatch({
  train_mirrored(dir, list(interrupt_at(3, 4)))
  FALSE
}, python.builtin.RuntimeError = function(e) TRUE)
info <- backup_info(dir)
resumed <- train_mirrored(dir, fit_in_scope = FALSE)

saveRDS(c(
  list(replicas = reference$model$distribute_strategy$num_replicas_in_sync,
       stopped = stopped,
       checkpoint = c(epoch = info$epoch, batch = info$batch, verified = info$verified),
       cleaned_up = !dir.exists(dir)),
  same_training(resumed, reference)
), args[[2]])
