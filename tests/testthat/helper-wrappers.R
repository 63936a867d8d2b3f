# A tensor's values as an R array (through the generated op wrapper).
as_r <- function(x) op_convert_to_numpy(x)

py_text <- function(x) reticulate::py_str(x)
