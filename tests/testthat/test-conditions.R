# Every condition here comes from a real Python exception raised through
# the reticulate that is loaded (1.28 in the Debian library, 1.46 in a newer
# one): py_run_string("raise ..."), Keras' fit(), with() on a real context
# manager, an R function that Python calls. reticulate 1.28 signals a bare
# Rcpp::exception, and our condition is a plain list without
# python.builtin.object; newer reticulate (>= 1.29) signals the exception
# itself, and our condition stays that exception (python.builtin.object,
# its "py_object" attribute) with our classes in front.

new_reticulate <- function() utils::packageVersion("reticulate") >= "1.29"

# The classes after ours, for a Python exception whose hierarchy is `py`.
py_tail <- function(py) {
  c(py, if (new_reticulate()) "python.builtin.object", "error", "condition")
}

runtime_error <- c("python.builtin.RuntimeError", "python.builtin.Exception",
                   "python.builtin.BaseException")

# Python helpers: call(f) calls an R function from Python; Recorder is a
# context manager that records what its __exit__ was given.
py_helpers <- function() {
  kerasbackup:::py_kb()
  reticulate::py_run_string(paste(
    "def kb_test_call(f):",
    "    return f()",
    "class KbTestRecorder:",
    "    exit_args = None",
    "    def __enter__(self):",
    "        return self",
    "    def __exit__(self, *args):",
    "        type(self).exit_args = args",
    "        return False",
    sep = "\n"))
  reticulate::py
}

peer_lost_code <- paste0("from kerasbackup.errors import PeerLostError\n",
                         "raise PeerLostError('rank 1: gone', rank=1)")

raise_peer_lost <- function() {
  kerasbackup:::with_py_errors(reticulate::py_run_string(peer_lost_code))
}

peer_lost_classes <- c("kerasbackup_peer_lost", "kerasbackup_error",
                       "kerasbackup_python_error",
                       py_tail(c("kerasbackup.errors.PeerLostError", runtime_error)))

# Beside keras3, fit() is keras3's: its errors are reticulate's own
# conditions, with our R classes in front only for our own Python exceptions
# (kerasbackup's class filter), and reticulate's message. The
# `kerasbackup_python_error` class and the short message "Type: text" come
# from kerasbackup's own fit().

fit_classes <- function(classes) {
  if (!beside_keras3()) return(classes)
  classes <- setdiff(classes, "kerasbackup_python_error")
  # An R error raised in an R callback is a RuntimeError for Python;
  # reticulate does not bring its R classes back.
  if ("python.builtin.RuntimeError" %in% classes &&
      !any(startsWith(classes, "kerasbackup."))) {
    classes <- classes[!startsWith(classes, "kerasbackup_")]
  }
  classes
}

expect_fit_message <- function(err, type, text) {
  if (beside_keras3()) {
    # reticulate 1.46: "<module.Type>: text" and a pointer to py_last_error().
    expect_match(conditionMessage(err), paste0(type, ": ", text), fixed = TRUE)
  } else {
    expect_identical(conditionMessage(err), paste0(type, ": ", text))
  }
}

test_that("the reticulate version is the one the conditions are built for", {
  skip_if_no_python()
  expect_identical(kerasbackup:::reticulate_has_py_conditions(), new_reticulate())
  e <- tryCatch(reticulate::py_run_string("raise RuntimeError('boom')"),
                error = function(e) e)
  if (new_reticulate()) {
    # reticulate's own condition: the exception, as a list with its ref.
    expect_identical(class(e), py_tail(runtime_error))
    expect_true(is.environment(attr(e, "py_object", exact = TRUE)))
  } else {
    expect_identical(class(e), c("Rcpp::exception", "C++Error", "error", "condition"))
  }
})

test_that("a Python exception becomes our condition, with the exact classes", {
  skip_if_no_python()
  kerasbackup:::py_kb()
  err <- tryCatch(
    kerasbackup:::with_py_errors(reticulate::py_run_string("raise KeyError('k')")),
    error = function(e) e)
  expect_identical(class(err), c(
    "kerasbackup_python_error",
    py_tail(c("python.builtin.KeyError", "python.builtin.LookupError",
              "python.builtin.Exception", "python.builtin.BaseException"))))
  expect_identical(conditionMessage(err), "KeyError: 'k'")
  expect_identical(typeof(err), "list")
  # It is a Python object exactly when reticulate made it one.
  expect_identical(inherits(err, "python.builtin.object"), new_reticulate())
  expect_identical(is.environment(attr(err, "py_object", exact = TRUE)),
                   new_reticulate())
  expect_identical(reticulate::py_str(err$py_exception), "'k'")
  if (new_reticulate()) {
    # reticulate's functions for Python objects work on it.
    expect_identical(reticulate::py_str(reticulate::py_get_attr(err, "args")),
                     "('k',)")
  }
  # Handlers of the Python classes and of ours catch it.
  for (cls in c("python.builtin.KeyError", "python.builtin.Exception",
                "python.builtin.BaseException", "kerasbackup_python_error")) {
    handlers <- stats::setNames(list(function(e) "caught"), cls)
    caught <- do.call(tryCatch, c(list(quote(
      kerasbackup:::with_py_errors(reticulate::py_run_string("raise KeyError('k')")))),
      handlers))
    expect_identical(caught, "caught", label = cls)
  }
})

test_that("$, [[, print, format, str and conditionMessage work on our conditions", {
  skip_if_no_python()
  err <- tryCatch(raise_peer_lost(), error = function(e) e)
  expect_identical(class(err), peer_lost_classes)
  expect_identical(conditionMessage(err), "PeerLostError: rank 1: gone")
  expect_identical(err$message, "PeerLostError: rank 1: gone")
  expect_identical(err[["message"]], "PeerLostError: rank 1: gone")
  expect_null(conditionCall(err))
  expect_null(err$call)
  # Other names are the exception's attributes.
  expect_identical(err$rank, 1L)
  expect_identical(err[["rank"]], 1L)
  expect_null(err$no_such_attribute)
  expect_identical(format(err), "PeerLostError: rank 1: gone")
  expect_output(print(err), "<kerasbackup_peer_lost: PeerLostError: rank 1: gone>",
                fixed = TRUE)
  out <- utils::capture.output(str(err))
  expect_match(out[[1]], "^<kerasbackup_peer_lost> List of 2")
  expect_match(paste(out, collapse = "\n"), "rank 1: gone", fixed = TRUE)
  err$message <- "changed"
  expect_identical(conditionMessage(err), "changed")
  expect_identical(class(err), peer_lost_classes)
  expect_identical(is.environment(attr(err, "py_object", exact = TRUE)),
                   new_reticulate())
  # stop() with it signals it as it is.
  again <- tryCatch(stop(err), error = function(e) e)
  expect_identical(class(again), peer_lost_classes)
  expect_identical(conditionMessage(again), "changed")
})

test_that("an R stop() inside a callback arrives as a classed RuntimeError", {
  skip_if_no_python()
  stopper <- new_callback_class(
    "Stopper",
    on_epoch_begin = function(epoch, logs = NULL) if (epoch == 2) stop("Interrupting!")
  )
  data <- toy_data(n = 8)
  model <- toy_model(dropout = FALSE)
  err <- tryCatch(
    model %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                  callbacks = list(stopper())),
    error = function(e) e
  )
  expect_identical(class(err), fit_classes(c("kerasbackup_python_error",
                                              py_tail(runtime_error))))
  expect_fit_message(err, "RuntimeError", "Interrupting!")
  caught <- tryCatch(
    model %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                  callbacks = list(stopper())),
    python.builtin.RuntimeError = function(e) "caught"
  )
  expect_identical(caught, "caught")
})

test_that("an interrupted fit() inside with(tf$device()) is a RuntimeError", {
  # The reference example: with(tf$device(...), fit(...)) and a
  # python.builtin.RuntimeError handler.
  skip_if_no_python()
  tf <- reticulate::import("tensorflow")
  stopper <- new_callback_class(
    "Stopper",
    on_epoch_begin = function(epoch, logs = NULL) if (epoch == 1) stop("Interrupting!")
  )
  data <- toy_data(n = 8)
  model <- toy_model(dropout = FALSE)
  err <- tryCatch(
    with(tf$device("/cpu:0"),
         model %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                       callbacks = list(stopper()))),
    python.builtin.RuntimeError = function(e) e
  )
  expect_identical(class(err), fit_classes(c("kerasbackup_python_error",
                                              py_tail(runtime_error))))
  expect_fit_message(err, "RuntimeError", "Interrupting!")
})

test_that("our classes survive with() on a real context manager", {
  skip_if_no_python()
  py <- py_helpers()
  recorder <- py$KbTestRecorder()
  err <- tryCatch(with(recorder, raise_peer_lost()), error = function(e) e)
  expect_identical(class(err), peer_lost_classes)
  expect_identical(conditionMessage(err), "PeerLostError: rank 1: gone")
  # (type, value) as one string, whatever reticulate's conversion.
  exit_args <- reticulate::py_eval(paste(
    "repr([None if a is None else getattr(a, '__name__', None) or str(a)",
    "for a in KbTestRecorder.exit_args[:2]])"))
  if (new_reticulate()) {
    # Newer reticulate gives __exit__ the exception itself.
    expect_identical(exit_args, "['PeerLostError', 'rank 1: gone']")
  } else {
    expect_identical(exit_args, "[None, None]")
  }
  # Nested context managers, and a handler of a Python class.
  caught <- tryCatch(
    with(py$KbTestRecorder(), with(py$KbTestRecorder(), raise_peer_lost())),
    python.builtin.RuntimeError = function(e) class(e))
  expect_identical(caught, peer_lost_classes)
})

test_that("our errors raised in an R function that Python calls keep their classes", {
  skip_if_no_python()
  py <- py_helpers()
  # Python -> R (stop() with our condition) -> back through Python.
  mine <- tryCatch(raise_peer_lost(), error = function(e) e)
  err <- tryCatch(kerasbackup:::with_py_errors(py$kb_test_call(function() stop(mine))),
                  error = function(e) e)
  expect_identical(class(err), peer_lost_classes)
  expect_identical(conditionMessage(err), "PeerLostError: rank 1: gone")
  expect_identical(err$rank, 1L)
  # The error raised by a call into Python in the R function.
  err <- tryCatch(kerasbackup:::with_py_errors(py$kb_test_call(raise_peer_lost)),
                  error = function(e) e)
  expect_identical(class(err), peer_lost_classes)
  expect_identical(conditionMessage(err), "PeerLostError: rank 1: gone")
  # Nested: Python -> R -> Python -> R -> Python raising.
  err <- tryCatch(kerasbackup:::with_py_errors(py$kb_test_call(function() {
    kerasbackup:::with_py_errors(py$kb_test_call(raise_peer_lost))
  })), error = function(e) e)
  expect_identical(class(err), peer_lost_classes)
  expect_identical(conditionMessage(err), "PeerLostError: rank 1: gone")
})

test_that("our errors raised in an R callback during fit() keep their classes", {
  skip_if_no_python()
  data <- toy_data(n = 8)
  model <- toy_model(dropout = FALSE)
  raiser <- new_callback_class(
    "Raiser",
    on_epoch_begin = function(epoch, logs = NULL) if (epoch == 1) raise_peer_lost()
  )
  err <- tryCatch(model %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                                callbacks = list(raiser())),
                  error = function(e) e)
  expect_identical(class(err), fit_classes(peer_lost_classes))
  expect_fit_message(err, "PeerLostError", "rank 1: gone")
  expect_identical(err$rank, 1L)
  # An R-only error of ours (an argument check) becomes a RuntimeError in
  # Python, and keeps its classes and its whole message.
  checker <- new_callback_class(
    "Checker",
    on_epoch_begin = function(epoch, logs = NULL) {
      if (epoch == 1) kerasbackup:::abort_invalid_arg("foo", 3, "a string")
    }
  )
  err <- withr::with_options(
    list(cli.unicode = FALSE, cli.num_colors = 1L),
    tryCatch(model %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                           callbacks = list(checker())),
             error = function(e) e))
  expect_identical(class(err), fit_classes(c(
    "kerasbackup_invalid_argument", "kerasbackup_error", "kerasbackup_python_error",
    py_tail(runtime_error))))
  expect_fit_message(err, "RuntimeError", "`foo` must be a string.\nx Received: `3`.")
  # Inside with() on a strategy-like context manager too.
  tf <- reticulate::import("tensorflow")
  err <- tryCatch(with(tf$device("/cpu:0"),
                       model %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                                     callbacks = list(raiser()))),
                  kerasbackup_peer_lost = function(e) e)
  expect_identical(class(err), fit_classes(peer_lost_classes))
})

test_that("a second preemption signal is kerasbackup_preempted, not an interrupt", {
  skip_if_no_python()
  kerasbackup:::py_kb()
  abort_classes <- c("kerasbackup_preempted", "kerasbackup_error",
                     "kerasbackup_python_error",
                     py_tail(c("kerasbackup.preemption.PreemptionAbort",
                               "python.builtin.BaseException")))
  code <- paste0("from kerasbackup.preemption import PreemptionAbort\n",
                 "raise PreemptionAbort('SIGTERM received again: stopping at once')")
  err <- tryCatch(kerasbackup:::with_py_errors(reticulate::py_run_string(code)),
                  error = function(e) e, interrupt = function(e) "interrupt")
  expect_identical(class(err), abort_classes)
  expect_identical(conditionMessage(err),
                   "PreemptionAbort: SIGTERM received again: stopping at once")
  # Raised by a Python callback in Keras' fit(): no `except Exception` of
  # Keras catches it.
  reticulate::py_run_string(paste(
    "import keras",
    "from kerasbackup.preemption import PreemptionAbort",
    "class KbTestAbort(keras.callbacks.Callback):",
    "    def on_train_batch_end(self, batch, logs=None):",
    "        raise PreemptionAbort('SIGTERM received again: stopping at once')",
    sep = "\n"))
  data <- toy_data(n = 8)
  model <- toy_model(dropout = FALSE)
  err <- tryCatch(model %>% fit(data$x, data$y, epochs = 2, verbose = 0,
                                callbacks = list(reticulate::py$KbTestAbort())),
                  error = function(e) e, interrupt = function(e) "interrupt")
  expect_identical(class(err), fit_classes(abort_classes))
  expect_fit_message(err, "PreemptionAbort", "SIGTERM received again: stopping at once")
})

test_that("Python exceptions from fit(), evaluate() and predict() are classed", {
  skip_if_no_python()
  model <- toy_model(dropout = FALSE)
  bad_x <- matrix(1, 4, 3)  # the model expects 6 features
  for (call in list(
    function() model %>% fit(bad_x, matrix(1, 4, 1), verbose = 0),
    function() model %>% evaluate(bad_x, matrix(1, 4, 1)),
    function() predict(model, bad_x)
  )) {
    err <- tryCatch(call(), error = function(e) e)
    expect_identical(utils::tail(class(err), length(py_tail(character()))),
                     py_tail(character()))
    expect_s3_class(err, "python.builtin.ValueError")
    expect_s3_class(err, "python.builtin.Exception")
    if (!beside_keras3()) expect_s3_class(err, "kerasbackup_python_error")
    expect_match(conditionMessage(err), "^ValueError: ")
  }
})

test_that("no usable Python gives one clear error pointing at install_keras()", {
  skip_if_not_installed("callr")
  out <- callr::r(function() {
    Sys.setenv(RETICULATE_PYTHON = "/nonexistent/python")
    library(kerasbackup)
    err <- tryCatch(kerasbackup:::py_kb(), error = function(e) e)
    list(class = class(err), message = conditionMessage(err))
  })
  expect_true("kerasbackup_python_missing" %in% out$class)
  expect_match(out$message, "install_keras()", fixed = TRUE)
})

test_that("the errors of distributed training carry their R classes", {
  skip_if_no_python()
  kerasbackup:::py_kb()
  for (case in list(c("PeerLostError", "kerasbackup_peer_lost"),
                    c("ResumeMismatchError", "kerasbackup_resume_mismatch"))) {
    code <- sprintf("from kerasbackup.errors import %s\nraise %s('rank 1: gone')",
                    case[[1]], case[[1]])
    err <- tryCatch(kerasbackup:::with_py_errors(reticulate::py_run_string(code)),
                    error = function(e) e)
    expect_identical(class(err), c(
      case[[2]], "kerasbackup_error", "kerasbackup_python_error",
      py_tail(c(paste0("kerasbackup.errors.", case[[1]]), runtime_error))))
    expect_identical(conditionMessage(err), paste0(case[[1]], ": rank 1: gone"))
  }
})
