# `.[a, b] <- value`: assign the parts of a list, shape, tuple or vector to
# several names, as keras3 code does (with the `.` it takes from the dotty
# package, which Debian does not ship).

#' Destructuring assignment with `.[ ]`
#'
#' `.[a, b] <- value` assigns the first part of `value` to `a` and the
#' second to `b`. A `.` in the brackets skips one part; `..` skips any number
#' (`.[first, ..] <- shape`, `.[.., last] <- shape`). `value` may be a list,
#' a vector, a shape or a Python tuple or list.
#'
#' @format An object whose `[<-` method does the assignment.
#' @export
#' @examples
#' .[a, b] <- list(1, "two")
#' .[first, ..] <- c(10, 20, 30)
#' .[.., last] <- c(10, 20, 30)
. <- structure(list(), class = "kerasbackup_destructure")

#' @export
`[<-.kerasbackup_destructure` <- function(x, ..., value) {
  targets <- as.list(substitute(list(...)))[-1L]
  env <- parent.frame()
  parts <- destructure_parts(value)
  is_rest <- vapply(targets, identical, TRUE, quote(..))
  if (sum(is_rest) > 1L) {
    cli::cli_abort("Only one {.code ..} is allowed in {.code .[ ]}.",
                   class = c("kerasbackup_invalid_argument", "kerasbackup_error"),
                   call = env)
  }
  n_fixed <- length(targets) - sum(is_rest)
  if (length(parts) < n_fixed || (!any(is_rest) && length(parts) != n_fixed)) {
    cli::cli_abort(
      "{.code .[ ]} names {n_fixed} part{?s}, but the value has {length(parts)}.",
      class = c("kerasbackup_invalid_argument", "kerasbackup_error"), call = env
    )
  }
  rest_at <- which(is_rest)
  for (i in seq_along(targets)) {
    target <- targets[[i]]
    if (is_rest[[i]] || identical(target, quote(.))) next
    if (!is.symbol(target)) {
      cli::cli_abort("{.code .[ ]} takes names, {.code .} and {.code ..}; got {.code {deparse(target)}}.",
                     class = c("kerasbackup_invalid_argument", "kerasbackup_error"),
                     call = env)
    }
    at <- if (length(rest_at) && i > rest_at) length(parts) - (length(targets) - i) else i
    assign(as.character(target), parts[[at]], envir = env)
  }
  x
}

destructure_parts <- function(value) {
  if (inherits(value, "python.builtin.object")) value <- reticulate::py_to_r(value)
  if (inherits(value, "python.builtin.object")) {
    value <- reticulate::import_builtins()$list(value)
  }
  as.list(value)
}
