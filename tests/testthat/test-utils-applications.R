skip_if_keras3_front_end()

# random_*, config_*, utilities, datasets and applications.

test_that("random_* take shapes and integer seeds, and repeat with a seed", {
  skip_if_no_python()
  a <- random_normal(c(2, 3), seed = 42)
  b <- random_normal(shape(2, 3), seed = 42)
  expect_identical(shape(a), shape(2, 3))
  expect_identical(as_r(a), as_r(b))
  u <- as_r(random_uniform(c(100), minval = 2, maxval = 3, seed = 1))
  expect_true(all(u >= 2 & u < 3))
  i <- as_r(random_integer(c(50), minval = 0, maxval = 4, seed = 3))
  expect_true(all(i %in% 0:3))
  gen <- random_seed_generator(seed = 7)
  expect_s3_class(gen, "keras.src.random.seed_generator.SeedGenerator")
  expect_identical(shape(random_dropout(op_ones(c(4, 4)), rate = 0.5, seed = gen)), shape(4, 4))
  draws <- as_r(random_categorical(rbind(c(-100, 100)), num_samples = 5, seed = 1))
  expect_identical(as.integer(draws), rep(2L, 5))
  expect_error(random_normal(c(2, 2), seed = 1.5), class = "kerasbackup_invalid_argument")
})

test_that("config_* read and set Keras' configuration", {
  skip_if_no_python()
  expect_identical(config_backend(), "tensorflow")
  expect_identical(config_floatx(), "float32")
  old <- config_epsilon()
  config_set_epsilon(1e-5)
  expect_equal(config_epsilon(), 1e-5)
  config_set_epsilon(old)
  expect_identical(config_image_data_format(), "channels_last")
  expect_type(config_is_interactive_logging_enabled(), "logical")
  expect_invisible(use_backend("tensorflow"))
  expect_error(use_backend("jax"), class = "kerasbackup_backend_error")
  expect_error(use_backend("cntk"), class = "kerasbackup_invalid_argument")
})

test_that("to_categorical, normalize and pad_sequences work on R values", {
  skip_if_no_python()
  expect_identical(to_categorical(c(0, 2, 1)), rbind(c(1, 0, 0), c(0, 0, 1), c(0, 1, 0)))
  expect_identical(dim(to_categorical(c(0, 1), num_classes = 4)), c(2L, 4L))
  expect_equal(normalize(matrix(c(3, 0, 4, 1), 2)), rbind(c(0.6, 0.8), c(0, 1)))
  padded <- pad_sequences(list(c(1, 2, 3), 4), maxlen = 3)
  expect_identical(padded, rbind(1:3, c(0L, 0L, 4L)))
  expect_identical(pad_sequences(list(1:4), maxlen = 2, padding = "post", truncating = "post"),
                   rbind(1:2))
})

test_that("timeseries_dataset_from_array makes windows of an R vector", {
  skip_if_no_python()
  ds <- timeseries_dataset_from_array(1:10, targets = NULL, sequence_length = 3,
                                      batch_size = 4)
  batches <- reticulate::iterate(ds, function(b) as_r(b))
  expect_identical(length(batches), 2L)
  expect_identical(dim(batches[[1]]), c(4L, 3L))
  expect_equal(batches[[1]][1, ], c(1, 2, 3))
  expect_equal(nrow(batches[[2]]), 4)
})

test_that("dataset utilities read directories", {
  skip_if_no_python()
  dir <- withr::local_tempdir()
  for (cls in c("neg", "pos")) {
    dir.create(file.path(dir, cls))
    for (i in 1:3) writeLines(paste(cls, "text", i), file.path(dir, cls, paste0(i, ".txt")))
  }
  ds <- text_dataset_from_directory(dir, batch_size = 2, seed = 1)
  expect_identical(unlist(ds$class_names), c("neg", "pos"))
  splits <- split_dataset(matrix(1:20, 10), left_size = 0.8, shuffle = FALSE)
  expect_identical(length(splits), 2L)
  expect_identical(reticulate::py_len(splits[[1]]), 8L)
})

test_that("image utilities round-trip an array", {
  skip_if_no_python()
  img <- array(runif(8 * 8 * 3), c(8, 8, 3)) * 255
  path <- withr::local_tempfile(fileext = ".png")
  image_array_save(path, img)
  back <- image_to_array(image_load(path))
  expect_identical(dim(back), c(8L, 8L, 3L))
  expect_identical(dim(image_to_array(image_smart_resize(img, size = c(4, 4)))), c(4L, 4L, 3L))
})

test_that("an application is built without weights and preprocesses its inputs", {
  skip_if_no_python()
  model <- application_mobilenet_v3_small(weights = NULL, input_shape = c(32, 32, 3),
                                          classes = 5, include_preprocessing = FALSE)
  expect_identical(shape(model$output), shape(NA, 5))
  x <- array(runif(2 * 32 * 32 * 3) * 255, c(2, 32, 32, 3))
  expect_identical(dim(predict(model, x, verbose = 0)), c(2L, 5L))
  pre <- application_preprocess_inputs(model, x)
  expect_identical(dim(as_r(pre)), dim(x))
  vgg <- application_vgg16(weights = NULL, include_top = FALSE, input_shape = c(32, 32, 3))
  expect_identical(attr(vgg, "keras_application_module"), "vgg16")
  expect_error(application_preprocess_inputs(keras_model_sequential(), x),
               class = "kerasbackup_invalid_argument")
})

test_that("a failed download names its URL in a classed error", {
  skip_if_no_python()
  url <- "http://127.0.0.1:9/kerasbackup-missing.npz"
  err <- plain_message(get_file("kerasbackup-missing.npz", origin = url,
                                cache_dir = withr::local_tempdir()))
  expect_s3_class(err$cnd, "kerasbackup_download_error")
  expect_identical(err$cnd$url, url)
  expect_match(err$message, url, fixed = TRUE)
})

test_that("dataset_mnist() loads the data or names what it could not download", {
  skip_if_no_python()
  # Offline (as on the test machines) the download fails; with a network or a
  # cached copy the data loads. Either way the result is checked.
  out <- tryCatch(dataset_mnist(), kerasbackup_download_error = function(e) e)
  if (inherits(out, "kerasbackup_download_error")) {
    expect_identical(out$url, "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz")
  } else {
    expect_identical(names(out), c("train", "test"))
    expect_identical(dim(out$train$x), c(60000L, 28L, 28L))
  }
})
