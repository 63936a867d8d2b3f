# Training history: the keras3 `keras_training_history` class.

to_keras_training_history <- function(history) {
  params <- history$params
  metrics <- history$history
  metrics <- lapply(metrics, function(v) as.numeric(unlist(v)))
  structure(
    list(params = params, metrics = metrics),
    class = "keras_training_history"
  )
}

#' Training history
#'
#' `fit()` returns a `keras_training_history`: a list with `params` (verbose,
#' epochs, steps) and `metrics` (one numeric vector per metric, one value per
#' epoch run). After a restore it covers the whole run, epochs from the
#' checkpoint included.
#'
#' `as.data.frame()` gives the long format of keras3: one row per epoch of
#' `params$epochs` for each metric, with columns `epoch`, `value`, `metric`
#' and `data` (`"training"` or `"validation"`), and `NA` where an epoch has no
#' value (e.g. after early stopping).
#'
#' @param x A `keras_training_history`.
#' @param row.names,optional Unused, for the generic.
#' @param metrics Names of the metrics to plot; all by default.
#' @param ... Unused, or passed to [graphics::plot()].
#' @returns `as.data.frame()`: a data frame. `print()` and `plot()`: `x`,
#'   invisibly.
#' @name keras_training_history
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential() %>% layer_dense(1)
#' model %>% compile(optimizer = optimizer_sgd(), loss = "mse")
#' x <- matrix(runif(40), ncol = 4)
#' history <- model %>% fit(x, rowSums(x), epochs = 3, verbose = 0)
#' history
#' as.data.frame(history)
#' plot(history)
NULL

#' @rdname keras_training_history
#' @export
as.data.frame.keras_training_history <- function(x, row.names = NULL,
                                                 optional = FALSE, ...) {
  epochs <- as.integer(x$params$epochs %||% max(lengths(x$metrics), 0L))
  n_epochs <- max(epochs, lengths(x$metrics), 0L)
  names <- names(x$metrics)
  base <- unique(sub("^val_", "", names))
  rows <- list()
  for (metric in base) {
    for (data in c("training", "validation")) {
      key <- if (data == "training") metric else paste0("val_", metric)
      if (!key %in% names) next
      values <- x$metrics[[key]]
      length(values) <- n_epochs
      rows[[length(rows) + 1L]] <- data.frame(
        epoch = seq_len(n_epochs), value = values, metric = metric,
        data = data, stringsAsFactors = FALSE
      )
    }
  }
  if (!length(rows)) {
    return(data.frame(epoch = integer(), value = numeric(),
                      metric = character(), data = character()))
  }
  out <- do.call(rbind, rows)
  out$metric <- factor(out$metric, levels = base)
  out$data <- factor(out$data, levels = c("training", "validation"))
  rownames(out) <- NULL
  out
}

#' @rdname keras_training_history
#' @export
print.keras_training_history <- function(x, ...) {
  epochs <- x$params$epochs %||% max(lengths(x$metrics), 0L)
  run <- max(lengths(x$metrics), 0L)
  cat("\nFinal epoch (plot to see history):\n")
  for (name in names(x$metrics)) {
    v <- x$metrics[[name]]
    cat(sprintf("%*s: %s\n", max(nchar(names(x$metrics))), name,
                format(utils::tail(v, 1), digits = 4)))
  }
  cat(sprintf("(%d of %d epochs)\n", run, as.integer(epochs)))
  invisible(x)
}

#' @rdname keras_training_history
#' @export
plot.keras_training_history <- function(x, metrics = NULL, ...) {
  df <- as.data.frame(x)
  if (!is.null(metrics)) df <- df[df$metric %in% metrics, , drop = FALSE]
  df <- df[!is.na(df$value), , drop = FALSE]
  base <- unique(as.character(df$metric))
  if (!length(base)) return(invisible(x))
  old <- graphics::par(mfrow = c(length(base), 1), mar = c(4, 4, 1, 1))
  on.exit(graphics::par(old))
  for (metric in base) {
    sub <- df[df$metric == metric, , drop = FALSE]
    graphics::plot(sub$epoch, sub$value, type = "n", xlab = "epoch",
                   ylab = metric, ...)
    for (i in seq_along(levels(sub$data))) {
      d <- sub[sub$data == levels(sub$data)[i], , drop = FALSE]
      if (nrow(d)) graphics::lines(d$epoch, d$value, type = "o", col = i, pch = 19)
    }
    if (length(unique(sub$data)) > 1) {
      graphics::legend("topright", legend = levels(droplevels(sub$data)),
                       col = seq_along(unique(sub$data)), lty = 1, bty = "n")
    }
  }
  invisible(x)
}
