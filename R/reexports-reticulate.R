# reticulate functions that keras3 code calls unqualified. They are wrappers,
# not imports, so that library(kerasbackup) does not load reticulate (and the
# Matrix package it imports): reticulate loads on the first call.

#' reticulate functions keras3 code uses
#'
#' Each calls the reticulate function of the same name with the same
#' arguments; reticulate (and Python) load on first use. See
#' [reticulate::np_array()], [reticulate::array_reshape()],
#' [reticulate::tuple()], [reticulate::py_help()], [reticulate::r_to_py()],
#' [reticulate::py_to_r()], [reticulate::import()],
#' [reticulate::use_python()], [reticulate::use_virtualenv()],
#' [reticulate::iterate()], [reticulate::as_iterator()],
#' [reticulate::iter_next()] and \code{reticulate::\link[reticulate:with-as-operator]{\%as\%}}.
#'
#' @param x,data,object,it An R or Python object, as for reticulate.
#' @param dim,order,dtype Shape, memory order and NumPy dtype of an array.
#' @param ... Items of the tuple.
#' @param convert Whether to convert Python results to R.
#' @param module,as,delay_load Module name, alias and whether to import on
#'   first use.
#' @param python,virtualenv,required The Python or virtualenv to use and
#'   whether it is required.
#' @param f,simplify,completed For iteration: the function applied to each
#'   item, whether to simplify the results, the value returned at the end.
#' @param name The name bound by `with()`.
#' @returns What the reticulate function returns.
#' @name reticulate-functions
#' @keywords internal
NULL

# Calls reticulate's function `name` with the caller's own call (arguments
# unevaluated), so reticulate's defaults, substitute() and parent.frame()
# behave as if it had been called directly.
call_reticulate <- function(name) {
  call <- sys.call(-1L)
  call[[1L]] <- call("::", quote(reticulate), as.name(name))
  eval(call, parent.frame(2L))
}

#' @rdname reticulate-functions
#' @export
array_reshape <- function(x, dim, order = c("C", "F")) {
  call_reticulate("array_reshape")
}

#' @rdname reticulate-functions
#' @export
np_array <- function(data, dtype = NULL, order = "C") {
  # reticulate's np_array() crashes R if Python has not started yet.
  py_kb()
  call_reticulate("np_array")
}

#' @rdname reticulate-functions
#' @export
tuple <- function(..., convert = FALSE) call_reticulate("tuple")

#' @rdname reticulate-functions
#' @export
py_help <- function(object) call_reticulate("py_help")

# Not a wrapper: .onLoad() binds r_to_py to reticulate's generic itself on
# first use, as R CMD check looks for the methods registered on
# reticulate::r_to_py (shape.R, py-class.R) under the r_to_py found here.
#' @rdname reticulate-functions
#' @usage r_to_py(x, convert = FALSE)
#' @export
r_to_py <- NULL

#' @rdname reticulate-functions
#' @export
py_to_r <- function(x) call_reticulate("py_to_r")

#' @rdname reticulate-functions
#' @export
import <- function(module, as = NULL, convert = TRUE, delay_load = FALSE) {
  call_reticulate("import")
}

#' @rdname reticulate-functions
#' @export
use_python <- function(python, required = NULL) call_reticulate("use_python")

#' @rdname reticulate-functions
#' @export
use_virtualenv <- function(virtualenv = NULL, required = NULL) {
  call_reticulate("use_virtualenv")
}

#' @rdname reticulate-functions
#' @export
as_iterator <- function(x) call_reticulate("as_iterator")

#' @rdname reticulate-functions
#' @export
iter_next <- function(it, completed = NULL) call_reticulate("iter_next")

#' @rdname reticulate-functions
#' @export
iterate <- function(it, f = base::identity, simplify = TRUE) {
  call_reticulate("iterate")
}

#' @rdname reticulate-functions
#' @usage object \%as\% name
#' @export
`%as%` <- function(object, name) call_reticulate("%as%")
