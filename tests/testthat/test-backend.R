skip_if_keras3_front_end()

skip_if_no_python()

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

test_that("Python can be used before use_backend(): only Keras fixes the backend", {
  # reticulate 1.28's py_module_available("keras") imports Keras (and so
  # fixes its backend); kerasbackup's own checks must not.
  out <- callr::r(function() {
    library(kerasbackup)
    kerasbackup:::check_python()
    rows <- nrow(backup_info(tempfile()))
    sys <- reticulate::import("sys")
    keras_before <- "keras" %in% names(sys$modules)
    use_backend("jax")
    list(rows = rows, keras_before = keras_before,
         backend = kerasbackup:::py_keras()$config$backend(),
         again = use_backend("jax"),
         other = tryCatch(use_backend("torch"), error = function(e) class(e)))
  })
  expect_identical(out$rows, 0L)
  expect_false(out$keras_before)
  expect_identical(out$backend, "jax")
  expect_identical(out$again, "jax")
  expect_true(all(c("kerasbackup_backend_locked", "kerasbackup_error") %in% out$other))
})

test_that("install_keras() checks `backend` and installs each backend's pins", {
  cnd <- plain_message(install_keras(backend = "theano"))
  expect_true("kerasbackup_invalid_argument" %in% cnd$class)
  expect_match(cnd$message, '"tensorflow", "jax", "torch"', fixed = TRUE)
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(install_keras(backend = character()))$class)
  base <- kerasbackup:::python_requirements()
  expect_true(all(c("keras==3.15.1", "tensorflow-cpu==2.21.0", "numpy==1.26.4")
                  %in% base))
  all3 <- kerasbackup:::python_requirements(c("tensorflow", "jax", "torch"))
  expect_identical(setdiff(all3, base), c("jax[cpu]==0.7.1", "torch==2.13.0"))
  expect_identical(kerasbackup:::python_requirements("torch"),
                   c(base, "torch==2.13.0"))
  remote <- setdiff(kerasbackup:::python_requirements(remote = TRUE), base)
  expect_true(all(grepl("^(fsspec|s3fs|gcsfs)==", remote)) && length(remote) == 3L,
              info = paste(remote, collapse = " "))
})
