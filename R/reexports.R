# Operators keras3 code uses, from the packages that define them.

#' @importFrom zeallot %<-%
#' @export
zeallot::`%<-%`

#' @importFrom magrittr %<>%
#' @export
magrittr::`%<>%`
