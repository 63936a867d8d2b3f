# Training history: the keras3 `keras_training_history` class.

#' @importFrom rlang .data
NULL

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
#' @returns `as.data.frame()`: a data frame. `print()`: `x`, invisibly. `plot()`: a ggplot object with ggplot2, `x`
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
#' @param y Unused.
#' @param method `"auto"` (ggplot2 when it is installed, base graphics
#'   otherwise), `"ggplot2"` or `"base"`.
#' @param smooth Whether to add a smoothed line when there are at least 10
#'   epochs.
#' @param theme_bw Whether to use ggplot2's `theme_bw()`.
plot.keras_training_history <- function(x, y, metrics = NULL,
                                        method = c("auto", "ggplot2", "base"),
                                        smooth = getOption("keras.plot.history.smooth", TRUE),
                                        theme_bw = getOption("keras.plot.history.theme_bw", FALSE),
                                        ...) {
  method <- match.arg(method)
  if (method == "auto") {
    method <- if (has_ggplot2()) "ggplot2" else "base"
  }
  df <- as.data.frame(x)
  if (!is.null(metrics)) {
    unknown <- setdiff(metrics, levels(df$metric))
    if (length(unknown)) {
      abort_invalid_arg("metrics", metrics, paste(
        "names of recorded metrics:", paste(levels(df$metric), collapse = ", ")))
    }
    df <- df[df$metric %in% metrics, , drop = FALSE]
    df$metric <- droplevels(df$metric)
  }
  df <- df[!is.na(df$value), , drop = FALSE]
  if (method == "ggplot2") {
    if (!has_ggplot2()) {
      cli::cli_abort("{.code method = \"ggplot2\"} needs the {.pkg ggplot2} package.",
                     class = c("kerasbackup_missing_package", "kerasbackup_error"))
    }
    return(plot_history_ggplot(df, smooth, theme_bw))
  }
  plot_history_base(df, smooth, ...)
  invisible(x)
}

has_ggplot2 <- function() requireNamespace("ggplot2", quietly = TRUE)

plot_history_ggplot <- function(df, smooth, theme_bw) {
  p <- ggplot2::ggplot(df, ggplot2::aes(x = .data$epoch, y = .data$value,
                                        colour = .data$data, fill = .data$data))
  p <- p + ggplot2::geom_point(shape = 21) +
    ggplot2::facet_grid(metric ~ ., switch = "y", scales = "free_y") +
    ggplot2::labs(x = "epoch", y = NULL, colour = NULL, fill = NULL)
  if (smooth && max(c(0, df$epoch)) >= 10) {
    p <- p + ggplot2::geom_smooth(formula = y ~ x, method = "loess", se = FALSE)
  } else if (nrow(df)) {
    p <- p + ggplot2::geom_line()
  }
  if (theme_bw) p <- p + ggplot2::theme_bw()
  p + ggplot2::theme(strip.placement = "outside",
                     strip.background = ggplot2::element_blank())
}

plot_history_base <- function(df, smooth, ...) {
  base <- levels(droplevels(df$metric))
  if (!length(base)) return(invisible())
  old <- graphics::par(mfrow = c(length(base), 1), mar = c(4, 4, 1, 1))
  on.exit(graphics::par(old))
  for (metric in base) {
    sub <- df[df$metric == metric, , drop = FALSE]
    sets <- levels(droplevels(sub$data))
    graphics::plot(sub$epoch, sub$value, type = "n", xlab = "epoch",
                   ylab = metric, ...)
    for (i in seq_along(sets)) {
      d <- sub[sub$data == sets[[i]], , drop = FALSE]
      graphics::points(d$epoch, d$value, col = i, pch = 19)
      if (smooth && nrow(d) >= 10) {
        graphics::lines(stats::lowess(d$epoch, d$value), col = i)
      } else {
        graphics::lines(d$epoch, d$value, col = i)
      }
    }
    if (length(sets) > 1L) {
      graphics::legend("topright", legend = sets, col = seq_along(sets),
                       lty = 1, pch = 19, bty = "n")
    }
  }
}
