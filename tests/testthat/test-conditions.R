hierarchy <- c("python.builtin.RuntimeError", "python.builtin.Exception",
               "python.builtin.BaseException", "python.builtin.object",
               "error", "condition")

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
  # The Python hierarchy, in order, ends the class vector.
  expect_identical(utils::tail(class(err), length(hierarchy)), hierarchy)
  expect_match(conditionMessage(err), "^RuntimeError: Interrupting!")
  caught <- tryCatch(
    model %>% fit(data$x, data$y, epochs = 3, verbose = 0,
                  callbacks = list(stopper())),
    python.builtin.RuntimeError = function(e) "caught"
  )
  expect_identical(caught, "caught")
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
    expect_s3_class(err, "python.builtin.ValueError")
    expect_s3_class(err, "python.builtin.Exception")
    expect_s3_class(err, "error")
    expect_match(conditionMessage(err), "^ValueError: ")
  }
})

test_that("the conversion keeps working when reticulate already classes the error", {
  skip_if_no_python()
  # Newer reticulate hands the Python exception over as the condition itself.
  exc <- reticulate::py_eval("RuntimeError('boom')", convert = FALSE)
  class(exc) <- c("python.builtin.RuntimeError", "python.builtin.Exception",
                  "python.builtin.BaseException", "python.builtin.object")
  cnd <- kerasbackup:::as_py_condition(exc)
  expect_identical(utils::tail(class(cnd), length(hierarchy)), hierarchy)
  expect_identical(conditionMessage(cnd), "RuntimeError: boom")
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
    expect_s3_class(err, case[[2]])
    expect_s3_class(err, "kerasbackup_error")
    expect_s3_class(err, "python.builtin.RuntimeError")
    expect_match(conditionMessage(err), paste0("^", case[[1]], ": rank 1: gone"))
  }
})
