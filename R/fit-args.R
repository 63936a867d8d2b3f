# Checks of fit()'s arguments, in R, before Python sees them: each bad value
# stops with a `kerasbackup_invalid_argument` error naming the argument, the
# value and what is accepted, so that nothing reaches Python as NA or as a
# number it cannot hold.

#' Check the arguments of fit()
#'
#' Reads them from `env`, the frame of
#' [fit()][fit.keras.src.models.model.Model]; errors are reported as that
#' call's.
#' @noRd
check_fit_args <- function(env = rlang::caller_env()) {
  arg <- function(name) get(name, envir = env, inherits = FALSE)
  call <- env
  int_max <- .Machine$integer.max

  epochs <- arg("epochs")
  if (!is_count(epochs, 0)) {
    abort_invalid_arg("epochs", epochs,
                      sprintf("a whole number from 0 to %d", int_max), call = call)
  }
  initial_epoch <- arg("initial_epoch")
  last <- max(1, epochs)
  if (!is_count(initial_epoch, 1, last)) {
    abort_invalid_arg(
      "initial_epoch", initial_epoch,
      sprintf("a whole number from 1 to `epochs` (%s), the epoch to start at",
              format(last, scientific = FALSE)),
      call = call)
  }
  for (name in c("batch_size", "steps_per_epoch", "validation_steps",
                 "validation_batch_size")) {
    check_optional_count(arg(name), name, call)
  }
  validation_freq <- arg("validation_freq")
  if (!(is.numeric(validation_freq) && !is.object(validation_freq) &&
        length(validation_freq) >= 1 &&
        all(vapply(validation_freq, is_count, TRUE, min = 1)))) {
    abort_invalid_arg("validation_freq", validation_freq,
                      "a whole number >= 1 (validate every that many epochs), or a vector of the epochs to validate after",
                      call = call)
  }
  validation_split <- arg("validation_split")
  if (!(is.numeric(validation_split) && length(validation_split) == 1 &&
        !is.na(validation_split) && validation_split >= 0 &&
        validation_split < 1)) {
    abort_invalid_arg("validation_split", validation_split,
                      "a number in [0, 1)", call = call)
  }
  shuffle <- arg("shuffle")
  if (!is_flag(shuffle)) {
    abort_invalid_arg("shuffle", shuffle, "`TRUE` or `FALSE`", call = call)
  }
  check_class_weight(arg("class_weight"), call)
  view_metrics <- arg("view_metrics")
  if (!(identical(view_metrics, "auto") || is_flag(view_metrics))) {
    abort_invalid_arg("view_metrics", view_metrics, '"auto", `TRUE` or `FALSE`',
                      call = call)
  }
  tryCatch(
    resolve_verbose(arg("verbose")),
    kerasbackup_invalid_argument = function(e) {
      abort_invalid_arg("verbose", arg("verbose"), '"auto", 0, 1, 2, `TRUE` or `FALSE`', call = call)
    }
  )
  invisible()
}

check_class_weight <- function(class_weight, call) {
  if (is.null(class_weight)) return(invisible())
  accepted <- paste(
    "`NULL` or a named list (or vector) mapping class indices",
    '(whole numbers >= 0, e.g. `list("0" = 1, "1" = 5)`) to weights >= 0')
  values <- if (is.list(class_weight)) class_weight else as.list(class_weight)
  names <- names(class_weight) %||% as.character(seq_along(values) - 1L)
  index <- suppressWarnings(as.numeric(names))
  ok <- (is.list(class_weight) || (is.numeric(class_weight) && !is.object(class_weight))) &&
    length(values) > 0 &&
    all(vapply(values, function(w) {
      is.numeric(w) && length(w) == 1 && !is.na(w) && is.finite(w) && w >= 0
    }, TRUE)) &&
    all(vapply(index, is_count, TRUE, min = 0)) && !anyDuplicated(index)
  if (!ok) abort_invalid_arg("class_weight", class_weight, accepted, call = call)
  invisible()
}

# `NULL`, or a count of samples or batches (>= 1) that Python holds as an int:
# the batch sizes and step counts of fit(), evaluate() and predict().
check_optional_count <- function(value, name, call = rlang::caller_env()) {
  if (!is.null(value) && !is_count(value, 1)) {
    abort_invalid_arg(name, value,
                      sprintf("`NULL` or a whole number from 1 to %d",
                              .Machine$integer.max),
                      call = call)
  }
  invisible()
}

# A whole number in [min, max] that R and Python hold as an integer.
is_count <- function(x, min = 0, max = .Machine$integer.max) {
  is_whole_number(x, min = min) && x <= max
}
