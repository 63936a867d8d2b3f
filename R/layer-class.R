#' Define a custom layer class
#'
#' Makes a Python subclass of `keras.layers.Layer` (or of `inherit`) whose
#' methods are R functions, and returns its generator: an R function whose
#' arguments are those of `initialize()` after a first argument `object`.
#' Called without `object` it returns a new layer; with a Sequential model
#' it adds the layer to the model; with a tensor (or a list of tensors) it
#' calls the layer on it and returns the output.
#'
#' @section Symbols in scope:
#' Inside every method:
#' * `self`: the instance. It may be written as the first argument of a
#'   method, or left out.
#' * `super`: the parent class, as `super$initialize(...)` or
#'   `super()$build(input_shape)`. `initialize` stands for `__init__`.
#' * `private`: an R environment that belongs to the instance and is never
#'   seen by Python; it starts with the members given as `private`. It is
#'   not saved by [callback_backup_and_restore()] or `save_model()`: state
#'   that training depends on belongs in variables (`self$add_weight()`,
#'   `self$add_variable()`, `random_seed_generator()`).
#' * `__class__` (and the class name): the Python class.
#'
#' R methods are shown to Python with their own arguments, so Keras finds
#' `training` and `mask` in `call()`, and records `initialize()`'s arguments
#' for `get_config()` when they are plain values. A default that is not a
#' plain value (a call such as `c(1, 2)`) is evaluated by R.
#'
#' @param classname String, the name of the Python class.
#' @param initialize,call,build,get_config Methods most layers define:
#'   `initialize(...)` sets the layer up (call `super$initialize(...)`),
#'   `build(input_shape)` creates weights once the input shape is known,
#'   `call(inputs, ...)` computes the output, and `get_config()` returns a
#'   named list from which `from_config()` can remake the layer.
#' @param ... More methods and fields, named. Trailing commas are allowed.
#' @param public A named list of more methods and fields.
#' @param private A named list of private members, copied into each
#'   instance's `private` environment; functions among them see `self`.
#' @param inherit The base class: a Python class, or a generator made by
#'   these functions. Evaluated when the class is first used.
#' @param parent_env The environment in which `inherit` is evaluated.
#' @returns A generator function (see Description).
#' @family subclassing
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' layer_scale <- Layer(
#'   "Scale",
#'   initialize = function(factor = 2, ...) {
#'     super$initialize(...)
#'     self$factor <- factor
#'   },
#'   call = function(inputs) op_multiply(inputs, self$factor),
#'   get_config = function() {
#'     modifyList(super$get_config(), list(factor = self$factor))
#'   }
#' )
#' layer <- layer_scale(factor = 3)
#' layer(op_ones(c(1, 2)))
Layer <- function(classname, initialize = NULL, call = NULL, build = NULL,
                  get_config = NULL, ..., public = list(), private = list(),
                  inherit = NULL, parent_env = parent.frame()) {
  members <- collect_members(
    list(initialize = initialize, call = call, build = build,
         get_config = get_config),
    ..., public = public
  )
  members <- as_classmethods(members, "from_config")
  new_class_generator(
    classname, members, private = private, inherit = substitute(inherit),
    parent_env = parent_env, family = "layer",
    default_base = function() py_keras()$layers$Layer,
    prefix = alist(object = ),
    make_body = function(args) bquote({
      object <- if (missing(object)) NULL else object
      compose_layer(object, new_instance(.(args)))
    })
  )
}

#' @rdname Layer
#' @export
new_layer_class <- Layer

as_classmethods <- function(members, names) {
  for (nm in intersect(names, names(members))) {
    if (is.function(members[[nm]]) && !is_py_object(members[[nm]]) &&
        is.null(attr(members[[nm]], "kerasbackup_decorator"))) {
      attr(members[[nm]], "kerasbackup_decorator") <- "classmethod"
    }
  }
  members
}
