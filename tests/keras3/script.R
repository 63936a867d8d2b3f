# A deterministic keras3 script: the coexistence harness (check.R) runs it
# in four load orders, each in its own Rscript process, and requires the
# stdout of every order to be byte-identical to the `none` order's.
#
#   Rscript script.R MODE [MSGFILE]
#
# MODE (or env KB_COEXIST_MODE):
#   none    library(keras3) only
#   after   library(keras3); library(kerasbackup)
#   before  library(kerasbackup); library(keras3)
#   ns      loadNamespace("kerasbackup"); library(keras3), and a
#           kerasbackup::callback_backup_and_restore() made mid-script
# MSGFILE (or env KB_COEXIST_MSGFILE): where the messages and warnings that
# the library()/loadNamespace() calls signal are written (they differ by
# order, e.g. the masking lines), one block per call, so they stay out of
# the compared stdout; check.R inspects them.
#
# Everything else on stdout must not depend on the mode. Nothing printed
# depends on paths, times or the process.

args <- commandArgs(trailingOnly = TRUE)
mode <- if (length(args) >= 1) args[[1]] else Sys.getenv("KB_COEXIST_MODE", "none")
msgfile <- if (length(args) >= 2) args[[2]] else Sys.getenv("KB_COEXIST_MSGFILE", "")
stopifnot(mode %in% c("none", "after", "before", "ns"))

load_msgs <- character()
quietly <- function(label, expr) {
  got <- character()
  withCallingHandlers(expr,
    message = function(m) {
      got <<- c(got, conditionMessage(m)); invokeRestart("muffleMessage")
    },
    warning = function(w) {
      got <<- c(got, paste0("Warning: ", conditionMessage(w)))
      invokeRestart("muffleWarning")
    })
  load_msgs <<- c(load_msgs, paste0("### ", label), got)
  invisible()
}

switch(mode,
  none   = quietly("library(keras3)", library(keras3)),
  after  = { quietly("library(keras3)", library(keras3))
             quietly("library(kerasbackup)", library(kerasbackup)) },
  before = { quietly("library(kerasbackup)", library(kerasbackup))
             quietly("library(keras3)", library(keras3)) },
  ns     = { quietly("loadNamespace(kerasbackup)", loadNamespace("kerasbackup"))
             quietly("library(keras3)", library(keras3)) })
if (nzchar(msgfile)) writeLines(load_msgs, msgfile) else
  writeLines(load_msgs, stderr())

# Where each package in play comes from goes to stderr (it is the same in
# every order, but the paths must not reach the compared stdout).
for (p in c("keras3", "kerasbackup", "reticulate"))
  if (isNamespaceLoaded(p))
    message("# ", p, " ", format(packageVersion(p)), " from ", find.package(p))

options(digits = 7, width = 80, keras.plot.model.dpi = 72L)
section <- function(title) cat("\n==== ", title, " ====\n", sep = "")
hexdouble <- function(x) sprintf("%.17g", as.double(x))
show_weights <- function(model, label) {
  ws <- get_weights(model)
  cat(label, ":", length(ws), "arrays\n")
  for (i in seq_along(ws)) {
    w <- ws[[i]]
    cat(sprintf("  [%d] dim=%s type=%s\n", i,
                paste(dim(w) %||% length(w), collapse = "x"), typeof(w)))
    cat(paste0("    ", hexdouble(w)), sep = "\n")
  }
  # The bytes of every weight, serialized: any change in any bit shows.
  con <- rawConnection(raw(), "wb")
  for (w in ws) writeBin(as.double(w), con, size = 8, endian = "little")
  bytes <- rawConnectionValue(con); close(con)
  cat("  checksum:", sum(as.integer(bytes) * seq_along(bytes)) %% 2147483647,
      "over", length(bytes), "bytes\n")
}
`%||%` <- function(a, b) if (is.null(a)) b else a
try_print <- function(expr) {
  r <- tryCatch(expr, error = function(e) e)
  if (inherits(r, "error")) cat("error of class:", paste(class(r), collapse = " "), "\n")
  invisible(r)
}

# ---------------------------------------------------------------------------
section("data")
set_random_seed(1234)
n <- 64L
x <- matrix(sin(seq_len(n * 4) / 7), n, 4)
y <- matrix(x %*% c(0.5, -1, 0.25, 2) + cos(seq_len(n)) / 10, n, 1)
x_val <- matrix(cos(seq_len(16 * 4) / 5), 16, 4)
y_val <- matrix(x_val %*% c(0.5, -1, 0.25, 2), 16, 1)
cat("x:", dim(x), " y:", dim(y), " sum(x) =", hexdouble(sum(x)), "\n")

# ---------------------------------------------------------------------------
section("tensors")
t1 <- op_convert_to_tensor(c(1.5, 2, 3))
cat("op_convert_to_tensor(doubles) dtype:", as.character(t1$dtype), "\n")
t2 <- op_convert_to_tensor(1:3)
cat("op_convert_to_tensor(integers) dtype:", as.character(t2$dtype), "\n")
print(as.array(t1 * 2))
print(class(t1))
cat("shape of op_ones(c(2, 3)):", format(op_shape(op_ones(c(2, 3)))), "\n")

# ---------------------------------------------------------------------------
section("Sequential model")
set_random_seed(1)
model <- keras_model_sequential(input_shape = 4, name = "seq") |>
  layer_dense(8, activation = "tanh", name = "hidden") |>
  layer_dense(1, name = "out")
model |> compile(optimizer = optimizer_sgd(learning_rate = 0.05),
                 loss = "mse", metrics = list("mae"))
print(class(model))
summary(model)
print(model)
cat(format(model), sep = "\n")

recorder <- Callback(
  "Recorder",
  on_train_begin = function(logs = NULL) self$seen <- integer(),
  on_epoch_end = function(epoch, logs = NULL) {
    self$seen <- c(self$seen, epoch)
    logs[["epoch_int"]] <- as.integer(epoch) * 2L
    logs[["epoch_dbl"]] <- epoch / 4
    logs
  }
)
rec <- recorder()
history <- model |> fit(
  x, y, epochs = 6, batch_size = 16, shuffle = FALSE, verbose = 0,
  validation_data = list(x_val, y_val),
  callbacks = list(rec, callback_early_stopping(monitor = "val_loss",
                                                patience = 10))
)
cat("callback saw epochs:", rec$seen, "\n")
print(class(history))
print(history)
df <- as.data.frame(history)
print(sapply(df, class))
print(df[, c("epoch", "metric", "data")])
cat(sprintf("%s %s %d %.17g\n", df$metric, df$data, df$epoch, df$value), sep = "")
cat("typeof history epoch_int:", typeof(history$metrics$epoch_int), "\n")
cat("typeof history epoch_dbl:", typeof(history$metrics$epoch_dbl), "\n")
str(history$params)
show_weights(model, "sequential weights after fit")

ev <- model |> evaluate(x_val, y_val, verbose = 0)
cat("evaluate:", paste(names(ev), hexdouble(unlist(ev))), "\n")
p <- model |> predict(x_val[1:5, , drop = FALSE], verbose = 0)
cat("predict(array): class", class(p), "dim", dim(p), "\n")
cat(hexdouble(p), sep = "\n")

gen <- function() {
  i <- 0L
  function() {
    i <<- i + 1L
    if (i > 3L) return(NULL)
    list(x_val[(i * 4 - 3):(i * 4), , drop = FALSE])
  }
}
pg <- try_print(model |> predict(gen(), steps = 3, verbose = 0))
if (!inherits(pg, "error")) {
  cat("predict(generator): dim", dim(pg), "\n")
  cat(hexdouble(pg), sep = "\n")
}

# ---------------------------------------------------------------------------
section("plot(model)")
pdf(NULL)
pr <- try_print(plot(model, show_shapes = TRUE))
if (!inherits(pr, "error")) { cat("plot() returned: "); str(pr) }
png_file <- file.path(tempdir(), "model.png")
pr2 <- try_print(plot(model, to_file = png_file))
if (!inherits(pr2, "error")) {
  cat("plot(to_file) returned: "); str(pr2)
  cat("png written:", file.exists(png_file), "\n")
}
invisible(dev.off())

# ---------------------------------------------------------------------------
section("custom Layer")
layer_lin <- Layer(
  "Lin",
  initialize = function(units, ...) {
    super$initialize(...)
    self$units <- as.integer(units)
  },
  build = function(input_shape) {
    self$w <- self$add_weight(shape = shape(tail(input_shape, 1), self$units),
                              initializer = initializer_glorot_uniform(seed = 7))
    self$b <- self$add_weight(shape = shape(self$units),
                              initializer = "zeros")
  },
  call = function(inputs) op_matmul(inputs, self$w) + self$b
)
lin <- layer_lin(units = 2)
print(class(lin))

# ---------------------------------------------------------------------------
section("functional model")
set_random_seed(2)
inp <- keras_input(shape = 4, name = "inp")
h <- inp |> layer_dense(6, activation = "relu", name = "f_hidden")
h <- h |> layer_lin(2, name = "f_lin")
out <- layer_concatenate(list(h, inp), name = "f_cat") |>
  layer_dense(1, name = "f_out")
fmodel <- keras_model(inp, out, name = "func")
print(class(fmodel))
summary(fmodel)
fmodel |> compile(optimizer = optimizer_adam(learning_rate = 0.01), loss = "mse")
fh <- fmodel |> fit(x, y, epochs = 4, batch_size = 32, shuffle = FALSE,
                    verbose = 0, validation_split = 0.25)
print(fh)
cat(sprintf("%.17g", fh$metrics$loss), sep = "\n")
cat(sprintf("%.17g", fh$metrics$val_loss), sep = "\n")
show_weights(fmodel, "functional weights after fit")

# ---------------------------------------------------------------------------
section("backup and restore callback")
# The backup callback the mode's code sees: keras3's where kerasbackup is
# not in play, kerasbackup's when asked for by name (`ns`), and whatever
# the search path gives otherwise. Its class goes to stderr only; an
# uninterrupted fit() with it must train exactly as keras3's does.
backup_dir <- file.path(tempdir(), "backup")
cb <- switch(mode,
  none = keras3::callback_backup_and_restore(backup_dir),
  ns = kerasbackup::callback_backup_and_restore(backup_dir),
  callback_backup_and_restore(backup_dir))
message("# backup callback class: ", paste(class(cb), collapse = " "))
set_random_seed(3)
bmodel <- keras_model_sequential(input_shape = 4, name = "bseq") |>
  layer_dense(3, activation = "relu", name = "b_hidden") |>
  layer_dense(1, name = "b_out")
bmodel |> compile(optimizer = optimizer_sgd(learning_rate = 0.05), loss = "mse")
bh <- try_print(bmodel |> fit(x, y, epochs = 3, batch_size = 16,
                              shuffle = FALSE, verbose = 0,
                              callbacks = list(cb)))
if (!inherits(bh, "error")) {
  cat(sprintf("%.17g", bh$metrics$loss), sep = "\n")
  show_weights(bmodel, "weights after fit with the backup callback")
}
cat("backup dir left behind:", dir.exists(backup_dir) && length(dir(backup_dir)) > 0, "\n")

# ---------------------------------------------------------------------------
section("saving and loading")
keras_file <- file.path(tempdir(), "model.keras")
save_model(fmodel, keras_file)
reloaded <- load_model(keras_file, custom_objects = list(Lin = layer_lin))
print(class(reloaded))
pr_a <- predict(fmodel, x_val, verbose = 0)
pr_b <- predict(reloaded, x_val, verbose = 0)
cat("reloaded predictions identical:", identical(pr_a, pr_b), "\n")
show_weights(reloaded, "reloaded weights")
weights_file <- file.path(tempdir(), "seq.weights.h5")
save_model_weights(model, weights_file)
set_random_seed(1)
model2 <- keras_model_sequential(input_shape = 4, name = "seq2") |>
  layer_dense(8, activation = "tanh", name = "hidden") |>
  layer_dense(1, name = "out")
load_model_weights(model2, weights_file)
cat("weights round trip identical:",
    identical(get_weights(model), get_weights(model2)), "\n")

# ---------------------------------------------------------------------------
section("seeds")
set_random_seed(99)
r1 <- as.array(random_normal(c(3)))
set_random_seed(99)
r2 <- as.array(random_normal(c(3)))
cat(hexdouble(r1), sep = "\n")
cat("same seed, same draws:", identical(r1, r2), "\n")
cat("\ndone\n")
