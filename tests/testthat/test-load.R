# library(kerasbackup) must not load reticulate (nor the Matrix package it
# imports) or Python; they load on first use, with the r-keras virtualenv.

test_that("library(kerasbackup) loads neither reticulate nor Matrix", {
  skip_if_keras3_front_end()
  out <- callr::r(function() {
    Sys.unsetenv("TF_CPP_MIN_LOG_LEVEL")
    library(kerasbackup)
    list(loaded = loadedNamespaces(),
         log_level = Sys.getenv("TF_CPP_MIN_LOG_LEVEL"))
  })
  expect_true("kerasbackup" %in% out$loaded)
  expect_false("reticulate" %in% out$loaded)
  expect_false("Matrix" %in% out$loaded)
  expect_identical(out$log_level, "2")
})

test_that("Python starts on first use, in the r-keras virtualenv", {
  skip_if_keras3_front_end()
  skip_if_no_python()
  out <- callr::r(function() {
    library(kerasbackup)
    before <- "reticulate" %in% loadedNamespaces()
    # A layer called on a model is added to it: reticulate's conversion uses
    # kerasbackup's py_to_r_wrapper() method, registered as reticulate loads.
    dense <- keras$layers$Dense(2L)
    model <- keras_model_sequential(input_shape = 3) %>% dense
    list(before = before,
         sum = as.numeric(tf$reduce_sum(tf$constant(c(1, 2, 3)))),
         backend = keras$backend$backend(),
         layers = length(model$layers),
         shape = class(r_to_py(shape(2, 3)))[[1]],
         python = reticulate::py_config()$python,
         prefix = reticulate::import("sys")$prefix,
         venv = dirname(dirname(reticulate::virtualenv_python("r-keras"))))
  })
  expect_false(out$before)
  expect_identical(out$sum, 6)
  expect_identical(out$backend, "tensorflow")
  expect_identical(out$layers, 1L)
  expect_identical(out$shape, "python.builtin.tuple")
  wanted <- Sys.getenv("RETICULATE_PYTHON")
  if (nzchar(wanted)) {
    expect_identical(normalizePath(out$python), normalizePath(wanted))
  } else {
    # sys.prefix is the virtualenv's own directory (its python is a symlink).
    expect_identical(normalizePath(out$prefix), normalizePath(out$venv))
  }
})

test_that("beside keras3, kerasbackup's keras3 names are keras3's objects and it registers no method", {
  skip_if_not_installed("keras3")
  out <- callr::r(function() {
    msgs <- character()
    withCallingHandlers({
      library(keras3)
      library(kerasbackup)
    }, message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    })
    ours <- getNamespaceExports("kerasbackup")
    k3 <- getNamespaceExports("keras3")
    shared <- setdiff(intersect(ours, k3), "callback_backup_and_restore")
    same <- vapply(shared, function(name) {
      identical(getExportedValue("kerasbackup", name),
                getExportedValue("keras3", name))
    }, TRUE)
    methods <- kerasbackup:::front_end_methods
    owners <- vapply(seq_len(nrow(methods)), function(i) {
      generic <- sub("^.*::", "", methods[i, 1])
      envir <- if (startsWith(methods[i, 1], "reticulate::"))
        asNamespace("reticulate") else globalenv()
      f <- utils::getS3method(generic, methods[i, 2], optional = TRUE,
                              envir = envir)
      if (is.null(f)) "" else environmentName(topenv(environment(f)))
    }, "")
    list(front_end = kerasbackup:::front_end(), n_shared = length(shared),
         different = shared[!same], messages = paste(msgs, collapse = "\n"),
         owners = unique(owners))
  })
  expect_identical(out$front_end, "keras3")
  expect_gt(out$n_shared, 700)
  expect_identical(out$different, character())
  expect_false("kerasbackup" %in% out$owners)
  expect_match(out$messages, "object is masked from .package:keras3.:\\s+callback_backup_and_restore\\s*$")
  expect_no_match(out$messages, "S3 method", fixed = TRUE)
})
