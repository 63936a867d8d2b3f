# Times a small fit() through the R front end (kerasbackup's fit()).
# Usage: Rscript bench/fit_small.R N_SAMPLES N_FEATURES UNITS EPOCHS BATCH REPEATS
# Prints one line "KB_BENCH {json}" with the elapsed seconds of each fit call
# (system.time around fit only; TensorFlow is imported before the first one).
suppressPackageStartupMessages(library(kerasbackup))
args <- as.integer(commandArgs(trailingOnly = TRUE))
n <- args[1]; d <- args[2]; units <- args[3]
epochs <- args[4]; batch <- args[5]; repeats <- args[6]

set.seed(1)
x <- matrix(runif(n * d), n, d)
y <- matrix(rowSums(x) / d, n, 1)
set_random_seed(1)
model <- keras_model_sequential(input_shape = d) %>%
  layer_dense(units, activation = "relu") %>%
  layer_dense(units, activation = "relu") %>%
  layer_dense(1)
model %>% compile(optimizer = optimizer_adam(), loss = "mse")

one_fit <- function() {
  system.time(
    model %>% fit(x, y, epochs = epochs, batch_size = batch, verbose = 0)
  )[["elapsed"]]
}
cold <- one_fit()
warm <- vapply(seq_len(repeats), function(i) one_fit(), numeric(1))
cat("KB_BENCH ", jsonlite::toJSON(list(cold = cold, warm = I(warm)), auto_unbox = TRUE,
                                  digits = NA), "\n", sep = "")
