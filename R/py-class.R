# Python classes defined from R: the machinery behind Layer(), Model(),
# Metric(), Loss(), LearningRateSchedule(), Constraint() and Callback().
#
# Each R method becomes a Python function with the R function's own
# signature (built in inst/python/kerasbackup/rclass.py), because Keras reads
# signatures. Inside a method, `self`, `super` (as `super()$m()` or
# `super$m()`), `private` (an R environment per instance) and `__class__` are
# in scope. The Python class is made on first use, so defining a class does
# not import Python.

py_rclass <- function() {
  if (is.null(.py$rclass)) {
    py_kb()
    path <- system.file("python", package = "kerasbackup", mustWork = TRUE)
    .py$rclass <- reticulate::import_from_path("kerasbackup.rclass", path = path)
  }
  .py$rclass
}

#' Make a class generator (the function returned by Layer() and friends)
#'
#' @param classname The Python class name.
#' @param members Named list of methods (R functions) and fields, from
#'   [collect_members()].
#' @param private Named list of private members, copied into each instance's
#'   `private` environment.
#' @param inherit An expression giving the base class (a Python class or a
#'   generator), evaluated in `parent_env` when the class is made; `NULL` for
#'   `default_base`.
#' @param default_base A function returning the default Python base class.
#' @param family Label used when printing, e.g. `"layer"`.
#' @param renames Member names to rename, e.g. `c(call = "__call__")`.
#' @param hooks Named character vector: methods wrapped as callback hooks,
#'   `"index"` (`(epoch or batch, logs)`, 1-based) or `"logs"`.
#' @param prefix Formals put before the constructor's (`object` for layers).
#' @param make_body A function of the expression that captures the given
#'   arguments, returning the generator's body; it may call
#'   `new_instance(args)`. By default the body returns the new instance.
#' @noRd
new_class_generator <- function(classname, members, private = list(),
                                inherit = NULL, parent_env = parent.frame(),
                                default_base, family, renames = NULL,
                                hooks = NULL, prefix = NULL,
                                make_body = NULL,
                                call = rlang::caller_env()) {
  force(parent_env)  # the constructor's caller, while it is still on the stack
  if (!is_string(classname)) {
    abort_invalid_arg("classname", classname, "a single non-empty string",
                      call = call)
  }
  members <- normalize_members(members, renames, call)
  if (length(private) && !is_named_list(private)) {
    abort_invalid_arg("private", private, "a named list", call = call)
  }
  holder <- new.env(parent = emptyenv())
  holder$classname <- classname
  holder$private <- private
  holder$hooks <- hooks
  get_class <- function() {
    if (is.null(holder$class)) {
      base <- resolve_base(inherit, parent_env, default_base)
      holder$class <- make_py_class(classname, members, base, holder)
    }
    holder$class
  }
  new_instance <- function(args) {
    with_py_errors(do.call(get_class(), args), call = NULL)
  }
  init <- members[["__init__"]]
  frmls <- if (is.function(init) && !is_py_object(init)) {
    method_formals(init)
  } else {
    alist(... = )
  }
  make_body <- make_body %||% function(args) bquote(new_instance(.(args)))
  generator <- function() NULL
  formals(generator) <- c(prefix, frmls)
  body(generator) <- make_body(
    if (is.null(prefix)) quote(capture_args())
    else bquote(capture_args(ignore = .(names(prefix))))
  )
  structure(generator,
            class = c("kerasbackup_class_generator", "function"),
            classname = classname, family = family, get_class = get_class)
}

#' @export
print.kerasbackup_class_generator <- function(x, ...) {
  cat("<", attr(x, "family"), " class ", attr(x, "classname"), ">\n", sep = "")
  invisible(x)
}

#' @exportS3Method reticulate::r_to_py kerasbackup_class_generator
r_to_py.kerasbackup_class_generator <- function(x, convert = FALSE) {
  attr(x, "get_class", exact = TRUE)()
}

# The formals of a method, without `self`.
method_formals <- function(fn) {
  frmls <- formals(fn)
  if (identical(names(frmls)[1], "self")) frmls <- frmls[-1]
  frmls
}

is_named_list <- function(x) {
  is.list(x) && !is.null(names(x)) && all(nzchar(names(x)))
}

normalize_members <- function(members, renames, call) {
  if (all(c("initialize", "__init__") %in% names(members))) {
    cli::cli_abort("Give {.code initialize} or {.code __init__}, not both.",
                   class = c("kerasbackup_invalid_argument", "kerasbackup_error"),
                   call = call)
  }
  renames <- c(initialize = "__init__", renames)
  for (from in names(renames)) {
    to <- renames[[from]]
    if (from %in% names(members) && !to %in% names(members)) {
      names(members)[names(members) == from] <- to
    }
  }
  members
}

#' Members of a class from the named arguments, `...` and `public`
#'
#' Later ones win. `NULL` named arguments are left out; a `NULL` in `...` or
#' `public` is a field set to `None`. Trailing empty arguments in `...` are
#' dropped (so `Callback("Name", on_epoch_end = f,)` works).
#' @noRd
collect_members <- function(named, ..., public = list(),
                            call = rlang::caller_env()) {
  dots <- rlang::list2(...)
  if (length(dots) && !is_named_list(dots)) {
    cli::cli_abort("All members of a class must be named.",
                   class = c("kerasbackup_invalid_argument", "kerasbackup_error"),
                   call = call)
  }
  if (length(public) && !is_named_list(public)) {
    abort_invalid_arg("public", public, "a named list", call = call)
  }
  members <- named[!vapply(named, is.null, TRUE)]
  for (extra in list(dots, public)) {
    for (nm in names(extra)) members[nm] <- list(extra[[nm]])
  }
  members
}

resolve_base <- function(inherit, parent_env, default_base) {
  base <- if (is.null(inherit)) default_base() else eval(inherit, parent_env)
  if (inherits(base, "kerasbackup_class_generator")) {
    base <- reticulate::r_to_py(base)
  }
  if (!inherits(base, "python.builtin.type")) {
    abort_invalid_arg("inherit", base, "a Python class or a class generator",
                      call = NULL)
  }
  base
}

make_py_class <- function(classname, members, base, holder) {
  rc <- py_rclass()
  py_members <- list()
  for (name in names(members)) {
    py_members[name] <- list(as_py_member(members[[name]], name, holder))
  }
  with_py_errors(rc$new_class(classname, list(base), py_members, "<r>"),
                 call = NULL)
}

as_py_member <- function(x, name, holder) {
  if (is_py_object(x) || !is.function(x)) return(x)
  rc <- py_rclass()
  decorator <- attr(x, "kerasbackup_decorator", exact = TRUE)
  if (identical(decorator, "classmethod")) {
    fn <- prepare_method(x, holder, first = "cls")
    return(rc$as_classmethod(wrap_r_function(name, fn)))
  }
  if (identical(decorator, "staticmethod")) {
    return(rc$as_staticmethod(wrap_r_function(name, prepare_method(x, holder, first = NULL))))
  }
  fn <- prepare_method(x, holder)
  if (identical(decorator, "property")) {
    getter <- wrap_r_function(name, fn)
    setter <- if (length(formals(fn)) > 1) getter
    return(rc$as_property(getter, setter))
  }
  hook <- if (name %in% names(holder$hooks)) holder$hooks[[name]]
  if (identical(hook, "index")) return(rc$wrap_index_hook(name, r_function_to_py(fn)))
  if (identical(hook, "logs")) return(rc$wrap_logs_hook(name, r_function_to_py(fn)))
  wrap_r_function(name, fn, returns = name != "__init__")
}

r_function_to_py <- function(fn) {
  if (!reticulate_has_py_conditions()) {
    # reticulate 1.28 hands Python only an R error's message; remember the
    # condition so that its classes can be put back when it reaches R again
    # (as_py_condition()). Newer reticulate keeps them itself.
    fn <- remembering_r_errors(fn)
  }
  reticulate::r_to_py(fn, convert = TRUE)
}

remembering_r_errors <- function(fn) {
  force(fn)
  function(...) withCallingHandlers(fn(...), error = remember_r_error)
}

wrap_r_function <- function(name, fn, returns = TRUE) {
  py_rclass()$wrap_function(name, r_function_to_py(fn), describe_params(fn),
                            returns = returns)
}

# `[name, kind, default]` for each formal; R's `...` becomes `*args` where it
# stands and `**kwargs` at the end, as Keras expects of pass-through
# constructors.
describe_params <- function(fn) {
  rc <- py_rclass()
  frmls <- formals(fn)
  nms <- names(frmls)
  params <- list()
  kind <- "positional"
  has_dots <- FALSE
  star <- if ("args" %in% nms) "r_args" else "args"
  starstar <- if ("kwargs" %in% nms) "r_kwargs" else "kwargs"
  for (nm in nms) {
    if (nm == "...") {
      params <- c(params, list(list(star, "var_positional")))
      kind <- "keyword_only"
      has_dots <- TRUE
      next
    }
    params <- c(params, list(
      if (identical(frmls[[nm]], quote(expr = ))) {
        list(nm, kind)
      } else {
        list(nm, kind, constant_default(frmls[[nm]], rc$R_DEFAULT))
      }
    ))
  }
  if (has_dots) params <- c(params, list(list(starstar, "var_keyword")))
  params
}

# A literal default (NULL, a number, string or flag) is shown to Python as
# itself; anything else is left for R to evaluate.
constant_default <- function(x, otherwise) {
  if (is.null(x)) return(NULL)
  if (is.call(x) && identical(x[[1]], as.name("-")) && length(x) == 2 &&
      is.numeric(x[[2]]) && length(x[[2]]) == 1) {
    return(-x[[2]])
  }
  if (is.atomic(x) && length(x) == 1 && !is.na(x) &&
      (is.numeric(x) || is.character(x) || is.logical(x))) {
    return(x)
  }
  otherwise
}

# Gives a method `self` (or `cls`) as first argument and `__class__`, the
# class name, `super` and `private` in scope, keeping its own closure.
prepare_method <- function(fn, holder, first = "self") {
  if (!is.null(first) && !identical(names(formals(fn))[1], first)) {
    frmls <- formals(fn)
    formals(fn) <- c(stats::setNames(alist(x = ), first), frmls)
  }
  env <- new.env(parent = environment(fn))
  makeActiveBinding("__class__", function() holder$class, env)
  if (!exists(holder$classname, envir = env, inherits = FALSE)) {
    makeActiveBinding(holder$classname, function() holder$class, env)
  }
  self_name <- first %||% "self"
  used <- all.names(body(fn))
  prologue <- list()
  if (identical(first, "cls") && first %in% used) {
    # The class arrives as reticulate's plain callable: give it the R call
    # conventions of any other Python class (`cls(!!!config)`).
    env$.kerasbackup_as_callable <- function(x) {
      reticulate::py_to_r(reticulate::r_to_py(x))
    }
    prologue <- c(prologue, quote(cls <- .kerasbackup_as_callable(cls)))
  }
  if ("super" %in% used && !"super" %in% names(formals(fn))) {
    env$.kerasbackup_super <- function(self) new_super_getter(holder, self)
    prologue <- c(prologue, bquote(
      delayedAssign("super", .kerasbackup_super(.(as.name(self_name))))
    ))
  }
  if ("private" %in% used && !"private" %in% names(formals(fn))) {
    env$.kerasbackup_private <- function(self) private_env(self, holder)
    prologue <- c(prologue, bquote(
      delayedAssign("private", .kerasbackup_private(.(as.name(self_name))))
    ))
  }
  if (length(prologue)) {
    old <- body(fn)
    rest <- if (is.call(old) && identical(old[[1]], as.name("{"))) {
      as.list(old)[-1]
    } else {
      list(old)
    }
    body(fn) <- as.call(c(as.name("{"), prologue, rest))
  }
  environment(fn) <- env
  fn
}

# `super` inside a method: `super()` is Python's super(__class__, self);
# `super$m` and `super()$m` are its attributes, `initialize` meaning
# `__init__`.
new_super_getter <- function(holder, self) {
  force(self)
  getter <- function(type = holder$class, object = self) {
    py_rclass()$builtin_super(type, object)
  }
  structure(getter, class = "kerasbackup_super_getter")
}

#' @export
`$.kerasbackup_super_getter` <- function(x, name) {
  sup <- x()
  do.call(`$`, list(sup, name))
}

#' @export
`[[.kerasbackup_super_getter` <- `$.kerasbackup_super_getter`

`$.python.builtin.super` <- function(x, name) {
  if (identical(name, "initialize")) name <- "__init__"
  NextMethod()
}

`[[.python.builtin.super` <- `$.python.builtin.super`

# ---------------------------------------------------------------- private

.private <- new.env(parent = emptyenv())

# The instance's private environment: made on first use from the class's
# `private` members, its functions seeing `self`, `private` and `super`.
private_env <- function(self, holder) {
  rc <- py_rclass()
  key <- as.character(rc$instance_key(self))
  env <- .private[[key]]
  if (!is.null(env)) return(env)
  dead <- as.character(unlist(rc$take_dead_keys()))
  if (length(dead)) rm(list = intersect(dead, names(.private)), envir = .private)
  env <- new.env(parent = emptyenv())
  for (nm in names(holder$private)) {
    value <- holder$private[[nm]]
    if (is.function(value) && !is_py_object(value)) {
      scope <- new.env(parent = environment(value))
      scope$self <- self
      scope$private <- env
      scope$super <- new_super_getter(holder, self)
      environment(value) <- scope
    }
    assign(nm, value, envir = env)
  }
  assign(key, env, envir = .private)
  env
}

#' Mark a method as a property
#'
#' The method becomes a Python property of the class: reading `self$name`
#' calls it. A method with an argument besides `self` is also the setter,
#' called with the assigned value.
#'
#' @param fn An R function.
#' @returns `fn`, marked.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' CustomModel <- Model(
#'   "CustomModel",
#'   initialize = function(...) {
#'     super$initialize(...)
#'     self$loss_tracker <- metric_mean(name = "loss")
#'   },
#'   metrics = active_property(function() list(self$loss_tracker))
#' )
active_property <- function(fn) {
  if (!is.function(fn)) abort_invalid_arg("fn", fn, "a function")
  structure(fn, kerasbackup_decorator = "property")
}

#' @rdname active_property
#' @export
mark_active <- active_property
