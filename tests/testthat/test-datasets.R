skip_if_keras3_front_end()

skip_if_no_python()

test_that("offline, dataset loaders give a classed error naming the URL", {
  # Point Python's HTTP(S) proxy at a closed local port: every download fails
  # at once, and the cache path is fresh so nothing cached is used.
  os <- reticulate::import("os")
  keys <- c("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY")
  old <- lapply(keys, function(k) os$environ$get(k))
  on.exit(for (i in seq_along(keys)) {
    if (is.null(old[[i]])) os$environ$pop(keys[[i]], NULL) else os$environ[[keys[[i]]]] <- old[[i]]
  }, add = TRUE)
  for (k in keys[1:4]) os$environ[[k]] <- "http://127.0.0.1:9"
  for (k in keys[5:6]) os$environ[[k]] <- ""
  # File names never cached, so each loader tries to download.
  fresh <- function(name) basename(tempfile(paste0("kerasbackup-test-", name, "-")))

  name <- fresh("mnist.npz")
  cnd <- plain_message(dataset_mnist(path = name))
  expect_true("kerasbackup_download_error" %in% cnd$class)
  expect_match(cnd$cnd$url, "^https://.*/mnist\\.npz$")
  expect_match(cnd$message, "mnist", fixed = TRUE)
  expect_match(cnd$message, cnd$cnd$url, fixed = TRUE)
  expect_false(file.exists(file.path(keras_datasets_dir(), name)))

  cnd <- plain_message(dataset_imdb(path = fresh("imdb.npz")))
  expect_true("kerasbackup_download_error" %in% cnd$class)
  expect_match(cnd$cnd$url, "/imdb\\.npz$")
  cnd <- plain_message(dataset_imdb_word_index(path = fresh("w.json")))
  expect_match(cnd$cnd$url, "/imdb_word_index\\.json$")
  cnd <- plain_message(dataset_boston_housing(path = fresh("b.npz")))
  expect_match(cnd$cnd$url, "/boston_housing\\.npz$")
  cnd <- plain_message(dataset_reuters(path = fresh("r.npz")))
  expect_match(cnd$cnd$url, "/reuters\\.npz$")
})
