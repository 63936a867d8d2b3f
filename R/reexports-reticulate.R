# reticulate functions that keras3 code calls without a prefix.

#' @importFrom reticulate array_reshape
#' @export
reticulate::array_reshape

#' @importFrom reticulate np_array
#' @export
reticulate::np_array

#' @importFrom reticulate tuple
#' @export
reticulate::tuple

#' @importFrom reticulate as_iterator
#' @export
reticulate::as_iterator

#' @importFrom reticulate iter_next
#' @export
reticulate::iter_next

#' @importFrom reticulate iterate
#' @export
reticulate::iterate

#' @importFrom reticulate %as%
#' @export
reticulate::`%as%`

#' @importFrom reticulate import
#' @export
reticulate::import

#' @importFrom reticulate py_to_r
#' @export
reticulate::py_to_r

#' @importFrom reticulate r_to_py
#' @export
reticulate::r_to_py

#' @importFrom reticulate use_python
#' @export
reticulate::use_python

#' @importFrom reticulate use_virtualenv
#' @export
reticulate::use_virtualenv
