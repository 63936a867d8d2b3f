# Small list helpers that keras3 code uses.

#' Zip lists together, or make a list named by its arguments
#'
#' `zip_lists(list(a1, a2), list(b1, b2))` gives
#' `list(list(a1, b1), list(a2, b2))`; named lists are matched by name.
#' `named_list(x, y)` gives `list(x = x, y = y)`.
#'
#' @param ... Lists of the same length (or one list of them) for
#'   `zip_lists()`; values for `named_list()`.
#' @returns A list.
#' @export
#' @examples
#' zip_lists(list(1, 2), list("a", "b"))
#' x <- 1; y <- "b"
#' named_list(x, y)
zip_lists <- function(...) {
  lists <- list(...)
  if (length(lists) == 1L) lists <- lists[[1L]]
  first <- names(lists[[1L]])
  for (i in seq_along(lists)[-1L]) {
    if (!identical(names(lists[[i]]), first)) {
      if (is.null(first) || !setequal(names(lists[[i]]), first)) {
        cli::cli_abort("All lists given to {.fn zip_lists} must have the same names.",
                       class = c("kerasbackup_invalid_argument", "kerasbackup_error"))
      }
      lists[[i]] <- lists[[i]][first]
    }
  }
  lengths <- unique(lengths(lists))
  if (length(lengths) != 1L) {
    cli::cli_abort("All lists given to {.fn zip_lists} must have the same length.",
                   class = c("kerasbackup_invalid_argument", "kerasbackup_error"))
  }
  out <- .mapply(list, unname(lists), NULL)
  names(out) <- first
  out
}

#' @rdname zip_lists
#' @export
named_list <- function(...) {
  values <- list(...)
  exprs <- as.list(substitute(list(...)))[-1L]
  given <- rlang::names2(values)
  inferred <- vapply(exprs, function(e) paste(deparse(e), collapse = ""), "")
  names(values) <- ifelse(nzchar(given), given, inferred)
  values
}
