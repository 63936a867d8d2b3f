# The Python helpers of the keras3-style front end (inst/python/kerasbackup/
# rapi.py), imported lazily like the rest of the package's Python.
py_rapi <- function() {
  if (is.null(.py$rapi)) {
    py_kb()
    path <- system.file("python", package = "kerasbackup", mustWork = TRUE)
    .py$rapi <- reticulate::import_from_path("kerasbackup.rapi", path = path)
  }
  .py$rapi
}

# A Python result as an R value, whether or not reticulate converted it.
py_value <- function(x) {
  if (inherits(x, "python.builtin.object")) reticulate::py_to_r(x) else x
}
