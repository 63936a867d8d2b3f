# S3 methods on classes that keras3 has methods for too (Keras models,
# tensors, histories, shapes, Python callables) and reticulate's hooks.
# They belong to the package's own front end: NAMESPACE registers none of
# them, and .onLoad registers them only when keras3 is not installed, so
# that beside keras3 every one of keras3's methods stays keras3's.

# Each tensor-like class gets the same methods (see R/tensor.R).
tensor_classes <- c(
  "tensorflow.python.types.core.Tensor",
  "keras.src.backend.common.keras_tensor.KerasTensor",
  "keras.src.backend.common.variables.Variable"
)

tensor_methods <- c(
  "[" = "tensor_subset",
  "[<-" = "tensor_subassign",
  Math = "tensor_math",
  Ops = "tensor_ops",
  Summary = "tensor_summary",
  as.array = "tensor_as_array",
  as.double = "tensor_as_double",
  as.integer = "tensor_as_integer",
  as.logical = "tensor_as_logical",
  as.numeric = "tensor_as_double",
  as.vector = "tensor_as_vector",
  dim = "tensor_dim",
  length = "tensor_length",
  mean = "tensor_mean"
)

# The other methods are named generic.class; generics by class.
class_methods <- list(
  "python.builtin.super" = c("$", "[["),
  "keras.src.callbacks.callback.Callback" = c("$<-", "[[<-"),
  "keras_shape" = c("[", "Ops", "as.integer", "as.list", "c", "format",
                    "print", "reticulate::r_to_py"),
  "keras_training_history" = c("as.data.frame", "plot", "print"),
  "keras.src.models.model.Model" = c("compile", "evaluate", "export_savedmodel",
                                     "fit", "format", "plot", "predict",
                                     "print", "summary"),
  "keras.src.layers.layer.Layer" = "reticulate::py_to_r_wrapper",
  "keras.src.losses.loss.Loss" = "reticulate::py_to_r_wrapper",
  "python.builtin.function" = "reticulate::py_to_r_wrapper",
  "python.builtin.method" = "reticulate::py_to_r_wrapper",
  "python.builtin.type" = "reticulate::py_to_r_wrapper"
)

# One row per method: generic, class, the function's name.
front_end_methods <- rbind(
  cbind(rep(names(tensor_methods), each = length(tensor_classes)),
        tensor_classes, rep(tensor_methods, each = length(tensor_classes))),
  do.call(rbind, Map(function(cls, generics) {
    cbind(generics, cls, paste0(sub("^.*::", "", generics), ".", cls))
  }, names(class_methods), class_methods))
)

# reticulate's generics get their methods once reticulate is loaded:
# library(kerasbackup) does not load it.
register_front_end_methods <- function(ns, reticulate = FALSE) {
  of_reticulate <- startsWith(front_end_methods[, 1], "reticulate::")
  for (i in which(of_reticulate == reticulate)) {
    generic <- sub("^.*::", "", front_end_methods[i, 1])
    # Our own generics' methods go by name, as NAMESPACE would record them
    # (R CMD check reads that record back).
    if (reticulate) {
      registerS3method(generic, front_end_methods[i, 2],
                       get(front_end_methods[i, 3], envir = ns),
                       envir = asNamespace("reticulate"))
    } else {
      registerS3method(generic, front_end_methods[i, 2],
                       front_end_methods[i, 3], envir = ns)
    }
  }
}
