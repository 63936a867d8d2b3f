# A backup_dir on object storage: an R fit() interrupted and resumed with its
# checkpoints on moto's S3 server (started here on 127.0.0.1, stopped at the
# end) ends bit-identical to an uninterrupted run with a local backup_dir.
# Credentials and the endpoint go through `storage_options`.

skip_if_no_s3_server <- function() {
  skip_if_no_python()
  if (reticulate::py_module_available("moto") &&
      reticulate::py_module_available("s3fs")) {
    return(invisible())
  }
  if (identical(tolower(Sys.getenv("KERASBACKUP_REQUIRE_PYTHON")), "true")) {
    stop("moto and s3fs are not installed in the Python used, and ",
         "KERASBACKUP_REQUIRE_PYTHON is true: run `make test`.")
  }
  skip("moto (the S3 test server) or s3fs is not installed")
}

# Starts the server and returns list(endpoint, pid); stopped when `env` ends.
local_s3_server <- function(bucket, env = parent.frame()) {
  ready <- tempfile("s3-server-", fileext = ".ready")
  config <- reticulate::py_config()
  args <- c(normalizePath(test_path("scripts", "s3_server.py")), ready,
            Sys.getpid(), bucket)
  log <- tempfile("s3-server-", fileext = ".log")
  # R puts the system's library directory first on LD_LIBRARY_PATH, where a
  # python binary would find the system's libpython instead of its own.
  libdir <- if (length(config$libpython)) dirname(config$libpython) else ""
  ld_path <- paste0("LD_LIBRARY_PATH=", shQuote(paste(
    c(libdir, Sys.getenv("LD_LIBRARY_PATH")), collapse = ":")))
  system2(config$python, shQuote(args), wait = FALSE, stdout = log,
          stderr = log, env = ld_path)
  deadline <- Sys.time() + 120  # only a guard against a server that never starts
  while (!file.exists(ready)) {
    if (Sys.time() > deadline) {
      stop("the S3 test server did not start:\n",
           paste(readLines(log, warn = FALSE), collapse = "\n"))
    }
    Sys.sleep(0.05)
  }
  fields <- strsplit(readLines(ready, warn = FALSE)[[1]], " ")[[1]]
  server <- list(pid = as.integer(fields[[1]]), endpoint = fields[[2]])
  withr::defer(tools::pskill(server$pid), envir = env)
  server
}

interrupt_in_epoch <- function(epoch_at) {
  new_callback_class(
    "InterruptInEpoch",
    on_epoch_begin = function(epoch, logs = NULL) {
      if (epoch == epoch_at) stop("Interrupting!")
    }
  )()
}

train_remote <- function(backup_dir, storage_options = NULL, extra = list()) {
  data <- toy_data()
  model <- toy_model()
  callbacks <- c(
    list(callback_backup_and_restore(backup_dir, save_freq = 2L,
                                     storage_options = storage_options),
         callback_reduce_lr_on_plateau(patience = 1, factor = 0.5)),
    extra
  )
  history <- model %>% fit(data$x, data$y, epochs = 5, batch_size = 6,
                           validation_split = 0.2, shuffle = TRUE,
                           callbacks = callbacks, verbose = 0)
  list(model = model, history = history)
}

test_that("an R fit() resumed from s3:// ends bit-identical to an uninterrupted one", {
  skip_if_no_s3_server()
  bucket <- "kb-r-tests"
  server <- local_s3_server(bucket)
  secret <- "kb-test-secret"
  options <- list(endpoint_url = server$endpoint, key = "kb-test-key",
                  secret = secret,
                  client_kwargs = list(region_name = "us-east-1"))
  url <- sprintf("s3://%s/%s/run-1", bucket, basename(tempfile("r")))

  reference <- train_remote(withr::local_tempdir())

  err <- tryCatch(train_remote(url, options, list(interrupt_in_epoch(3))),
                  error = function(e) e)
  expect_s3_class(err, "python.builtin.RuntimeError")
  info <- backup_info(url, storage_options = options)
  expect_identical(nrow(info), 1L)
  expect_true(info$verified)
  # 1-based: saved after the last batch of epoch 2. Under Keras' model.fit()
  # (keras3's fit()) that save is taken at the epoch's end, as the start of
  # epoch 3.
  expect_identical(c(info$epoch, info$batch), if (beside_keras3()) c(3L, 0L) else c(2L, 6L))
  expect_true(startsWith(info$path, url))

  # Without the endpoint the same URL is another (unreachable) store: the
  # error is classed and shows no credential.
  err <- tryCatch(
    backup_info(url, storage_options = list(endpoint_url = "http://127.0.0.1:9",
                                            key = "kb-test-key", secret = secret)),
    error = function(e) e)
  expect_s3_class(err, "kerasbackup_backup_dir_error")
  expect_false(grepl(secret, conditionMessage(err), fixed = TRUE))

  resumed <- train_remote(url, options)
  expect_identical(get_weights(resumed$model), get_weights(reference$model))
  expect_identical(optimizer_state(resumed$model), optimizer_state(reference$model))
  expect_identical(resumed$history$metrics, reference$history$metrics)
  # delete_checkpoint = TRUE: every object of ours is gone.
  expect_identical(nrow(backup_info(url, storage_options = options)), 0L)
})
