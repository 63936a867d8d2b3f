# Saving and loading models, weights and configs.

#' Save and load a whole model
#'
#' `save_model()` writes a model (architecture, weights and, if compiled,
#' the optimizer state) to a `.keras` file. `load_model()` reads it back.
#' Models that use layers, losses, metrics or functions defined in R need
#' them passed as `custom_objects` (or registered with Keras) to load.
#'
#' @param model A Keras model. For `load_model()`: the path of a `.keras`
#'   file, or the raw vector that `save_model()` returned.
#' @param filepath Path of the `.keras` file. Without it, `save_model()`
#'   returns the file's bytes as a raw vector.
#' @param overwrite Whether to replace an existing file.
#' @param zipped Whether to write a zipped `.keras` file (the default).
#' @param ... More arguments to `keras.saving.save_model()`.
#' @param custom_objects Objects defined outside Keras: a named list
#'   (names as saved in the model) or a list of classes and functions whose
#'   Python names are used.
#' @param compile Whether to compile the model after loading.
#' @param safe_mode Whether to refuse loading lambda functions (unsafe code).
#' @returns `save_model()`: the model invisibly, or a raw vector.
#'   `load_model()`: the model.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' file <- tempfile(fileext = ".keras")
#' save_model(model, file)
#' model2 <- load_model(file)
save_model <- function(model, filepath = NULL, overwrite = FALSE,
                       zipped = NULL, ...) {
  serialize <- is.null(filepath)
  if (serialize) {
    filepath <- tempfile("keras_model_", fileext = ".keras")
    on.exit(unlink(filepath), add = TRUE)
  } else {
    check_filepath(filepath, overwrite)
  }
  args <- list(model, path.expand(filepath), overwrite = TRUE, ...)
  if (!is.null(zipped)) args$zipped <- zipped
  with_py_errors(do.call(py_keras()$saving$save_model, args))
  if (serialize) readBin(filepath, "raw", n = file.size(filepath))
  else invisible(model)
}

#' @rdname save_model
#' @export
load_model <- function(model, custom_objects = NULL, compile = TRUE,
                       safe_mode = TRUE) {
  if (is.raw(model)) {
    path <- tempfile("keras_model_", fileext = ".keras")
    on.exit(unlink(path), add = TRUE)
    writeBin(model, path)
  } else if (is_string(model)) {
    path <- path.expand(model)
    if (!file.exists(path)) {
      cli::cli_abort("No model file at {.path {model}}.",
                     class = c("kerasbackup_file_not_found", "kerasbackup_error"))
    }
  } else {
    abort_invalid_arg("model", model,
                      "the path of a .keras file, or the raw vector from save_model()")
  }
  with_py_errors(py_keras()$saving$load_model(
    path, custom_objects = normalize_custom_objects(custom_objects),
    compile = compile, safe_mode = safe_mode
  ))
}

#' Save and load a model's weights
#'
#' @param model A Keras model.
#' @param filepath Path of the weights file; it must end in `.weights.h5`
#'   (or `.weights.json` for sharded weights).
#' @param overwrite Whether to replace an existing file.
#' @param max_shard_size Optional largest size of one shard, in GB.
#' @param skip_mismatch Whether to skip layers whose weights do not match.
#' @param ... More arguments to Keras' `load_weights()`.
#' @returns The model, invisibly.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' file <- tempfile(fileext = ".weights.h5")
#' save_model_weights(model, file)
#' load_model_weights(model, file)
save_model_weights <- function(model, filepath, overwrite = FALSE,
                               max_shard_size = NULL) {
  check_filepath(filepath, overwrite)
  args <- list(path.expand(filepath), overwrite = TRUE)
  if (!is.null(max_shard_size)) args$max_shard_size <- max_shard_size
  with_py_errors(do.call(model$save_weights, args))
  invisible(model)
}

#' @rdname save_model_weights
#' @export
load_model_weights <- function(model, filepath, skip_mismatch = FALSE, ...) {
  with_py_errors(model$load_weights(path.expand(filepath),
                                    skip_mismatch = skip_mismatch, ...))
  invisible(model)
}

#' Save and load a model's configuration
#'
#' The architecture only, as JSON; no weights.
#'
#' @param model A Keras model.
#' @param filepath Path of the JSON file.
#' @param overwrite Whether to replace an existing file.
#' @param custom_objects As for [load_model()].
#' @returns `save_model_config()`: the model, invisibly.
#'   `load_model_config()`: a new, unbuilt-weights model.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' file <- tempfile(fileext = ".json")
#' save_model_config(model, file)
#' load_model_config(file)
save_model_config <- function(model, filepath = NULL, overwrite = FALSE) {
  check_filepath(filepath, overwrite)
  writeLines(with_py_errors(model$to_json()), filepath)
  invisible(model)
}

#' @rdname save_model_config
#' @export
load_model_config <- function(filepath, custom_objects = NULL) {
  json <- paste(readLines(filepath, warn = FALSE), collapse = "\n")
  with_py_errors(py_keras()$models$model_from_json(
    json, custom_objects = normalize_custom_objects(custom_objects)
  ))
}

#' A layer's or model's configuration, and back
#'
#' `get_config()` returns the configuration as a named list that remembers
#' the object's class; `from_config()` makes a new object from it.
#'
#' @param object A Keras layer, model, optimizer, metric or other object
#'   with a configuration.
#' @param config A configuration from `get_config()`.
#' @param custom_objects As for [load_model()].
#' @returns `get_config()`: a named list. `from_config()`: a new object.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' config <- get_config(model)
#' model2 <- from_config(config)
get_config <- function(object) {
  config <- with_py_errors(object$get_config())
  attr(config, "keras_class") <- reticulate::py_get_attr(object, "__class__")
  config
}

#' @rdname get_config
#' @export
from_config <- function(config, custom_objects = NULL) {
  cls <- attr(config, "keras_class", exact = TRUE)
  if (is.null(cls) || reticulate::py_is_null_xptr(cls)) {
    cli::cli_abort(
      c("{.arg config} does not carry its class.",
        i = "Use a configuration returned by {.fn get_config} in this R
             session (its class does not survive saveRDS())."),
      class = c("kerasbackup_invalid_argument", "kerasbackup_error")
    )
  }
  attr(config, "keras_class") <- NULL
  custom_objects <- normalize_custom_objects(custom_objects)
  with_py_errors({
    if (is.null(custom_objects)) {
      cls$from_config(config)
    } else {
      scope <- py_keras()$saving$custom_object_scope(custom_objects)
      scope$`__enter__`()
      on.exit(scope$`__exit__`(NULL, NULL, NULL), add = TRUE)
      cls$from_config(config)
    }
  })
}

#' Clone a model
#'
#' A new model with the same architecture and fresh weights (copy them with
#' `set_weights(clone, get_weights(model))`).
#'
#' @param model A functional or Sequential model.
#' @param input_tensors Optional new input tensors.
#' @param clone_function Optional function called on each layer to make its
#'   clone.
#' @param call_function Optional function that calls each cloned layer.
#' @param recursive Whether to clone nested models too.
#' @param ... More arguments to `keras.models.clone_model()`.
#' @returns The new model.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
#' clone <- clone_model(model)
clone_model <- function(model, input_tensors = NULL, clone_function = NULL,
                        call_function = NULL, recursive = FALSE, ...) {
  with_py_errors(py_keras()$models$clone_model(
    model, input_tensors = input_tensors, clone_function = clone_function,
    call_function = call_function, recursive = recursive, ...
  ))
}

check_filepath <- function(filepath, overwrite, call = rlang::caller_env()) {
  if (!is_string(filepath)) {
    abort_invalid_arg("filepath", filepath, "a file path (a string)",
                      call = call)
  }
  if (file.exists(filepath) && !isTRUE(overwrite)) {
    cli::cli_abort(
      c("{.path {filepath}} already exists.",
        i = "Pass {.code overwrite = TRUE} to replace it."),
      class = c("kerasbackup_file_exists", "kerasbackup_error"),
      call = call
    )
  }
  invisible(filepath)
}

# One custom object as Python: a plain R function becomes a Python callable
# named `name`; an R class generator (Layer(), Loss(), ...) its Python class.
as_custom_object <- function(object, name) {
  plain_fn <- is.function(object) && !is_py_object(object) &&
    !inherits(object, "kerasbackup_class_generator")
  if (plain_fn && nzchar(name)) {
    as_callable(object, "custom_objects", default_name = name)
  } else {
    reticulate::r_to_py(object)
  }
}

# custom_objects as Keras takes them: a dict from saved names to Python
# objects. R classes and functions are converted with r_to_py().
normalize_custom_objects <- function(objects) {
  if (is.null(objects) || !length(objects)) return(NULL)
  if (!is.list(objects)) objects <- list(objects)
  names <- rlang::names2(objects)
  out <- list()
  for (i in seq_along(objects)) {
    name <- names[[i]]
    object <- as_custom_object(objects[[i]], name)
    if (!nzchar(name)) {
      name <- tryCatch(py_value(reticulate::py_get_attr(object, "__name__")),
                       error = function(e) "")
    }
    if (!nzchar(name)) {
      abort_invalid_arg("custom_objects", objects,
                        "a named list (each unnamed entry must be a Python class or function)")
    }
    out[[name]] <- object
  }
  reticulate::dict(out)
}

#' Custom objects for saving and loading
#'
#' Keras finds the classes and functions named in a saved model among its
#' registered custom objects. `register_keras_serializable()` registers one
#' under `package>name`; `set_custom_objects()` replaces (or adds to) the
#' global table, `get_custom_objects()` returns it; and
#' `with_custom_object_scope()` makes objects visible while `expr` runs.
#'
#' @param object An R function or class (e.g. from [Layer()]), or a Python
#'   one.
#' @param name Name to register it under (by default, the class's name, or
#'   the name of the symbol passed).
#' @param package Namespace of the registered name (default `"Custom"`).
#' @param objects A named list of custom objects.
#' @param clear Whether to clear the table first.
#' @param expr Code to run with `objects` in scope.
#' @returns `register_keras_serializable()`: for a class generator (from
#'   [Layer()] and friends), the generator itself, which goes on making
#'   instances of the registered class; otherwise the registered Python
#'   object.
#'   `get_custom_objects()`: a named list. `set_custom_objects()`: the
#'   previous table, invisibly. `with_custom_object_scope()`: the value of
#'   `expr`.
#' @export
register_keras_serializable <- function(object, name = NULL, package = NULL) {
  generator <- inherits(object, "kerasbackup_class_generator")
  # A class keeps its own name unless one is given; a plain R function is
  # named after the symbol passed.
  plain_fn <- is.function(object) && !is_py_object(object) && !generator
  name <- name %||% if (plain_fn) arg_symbol_name(substitute(object), "") else ""
  register <- py_keras()$saving$register_keras_serializable(
    package = package %||% "Custom", name = if (nzchar(name)) name
  )
  registered <- with_py_errors(register(as_custom_object(object, name)))
  # Keras registers the class itself, so the generator still makes (and
  # composes) instances of the registered class.
  if (generator) object else registered
}

#' @rdname register_keras_serializable
#' @export
get_custom_objects <- function() {
  with_py_errors(py_keras()$saving$get_custom_objects())
}

#' @rdname register_keras_serializable
#' @export
set_custom_objects <- function(objects = list(), clear = TRUE) {
  old <- with_py_errors(py_rapi()$set_custom_objects(
    normalize_custom_objects(objects), clear = clear))
  invisible(old)
}

#' @rdname register_keras_serializable
#' @export
with_custom_object_scope <- function(objects, expr) {
  scope <- py_keras()$saving$CustomObjectScope(normalize_custom_objects(objects))
  with(scope, expr)
}

#' Export a model as a TensorFlow SavedModel
#'
#' For serving (TensorFlow Serving, TFLite conversion): only the forward
#' pass is exported.
#'
#' @param object A Keras model.
#' @param export_dir_base The directory to write.
#' @param ... More arguments to Keras' `Model.export()`.
#' @returns The directory, invisibly.
#' @export
export_savedmodel <- function(object, export_dir_base, ...) {
  UseMethod("export_savedmodel")
}

#' @rdname export_savedmodel
export_savedmodel.keras.src.models.model.Model <- function(object, export_dir_base, ...) {
  with_py_errors(object$export(path.expand(export_dir_base),
                               format = "tf_saved_model", ...))
  invisible(export_dir_base)
}
