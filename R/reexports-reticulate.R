# reticulate functions that keras3 code calls unqualified.

#' @importFrom reticulate array_reshape np_array tuple py_help r_to_py py_to_r
#'   import use_python use_virtualenv as_iterator iter_next iterate %as%
#' @export
reticulate::array_reshape

#' @export
reticulate::np_array

#' @export
reticulate::tuple

#' @export
reticulate::py_help

#' @export
reticulate::r_to_py

#' @export
reticulate::py_to_r

#' @export
reticulate::import

#' @export
reticulate::use_python

#' @export
reticulate::use_virtualenv

#' @export
reticulate::as_iterator

#' @export
reticulate::iter_next

#' @export
reticulate::iterate

#' @export
reticulate::`%as%`
