require_python()

test_that("use_backend() checks its argument and the imported backend", {
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(use_backend("theano"))$class)
  kerasbackup:::py_keras()
  expect_identical(use_backend("tensorflow"), "tensorflow")
  cnd <- plain_message(use_backend("jax"))
  expect_true("kerasbackup_backend_locked" %in% cnd$class)
  expect_match(cnd$message, "tensorflow", fixed = TRUE)
})

test_that("before Keras is imported, use_backend() sets KERAS_BACKEND", {
  out <- callr::r(function() {
    library(kerasbackup)
    missing <- tryCatch(use_backend("openvino"), error = function(e) class(e))
    set <- use_backend("tensorflow")
    list(missing = missing, env = Sys.getenv("KERAS_BACKEND"),
         backend = kerasbackup:::py_keras()$config$backend())
  })
  expect_true("kerasbackup_backend_unavailable" %in% out$missing)
  expect_identical(out$env, "tensorflow")
  expect_identical(out$backend, "tensorflow")
})
