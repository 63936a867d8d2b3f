# Keras' built-in datasets, downloaded once into the Keras cache
# (~/.keras/datasets, or $KERAS_HOME/datasets).

#' Built-in datasets
#'
#' Each loader downloads its dataset on first use, caches it, and returns
#' `list(train = list(x, y), test = list(x, y))` of R arrays (for IMDB and
#' Reuters, `x` is a list of integer word-index vectors). Without network
#' access, and with nothing cached, they stop with an error of class
#' `kerasbackup_download_error` naming the address that could not be
#' fetched.
#'
#' * `dataset_mnist()`, `dataset_fashion_mnist()`: 28x28 grayscale images
#'   and labels 0 to 9.
#' * `dataset_cifar10()`, `dataset_cifar100()`: 32x32x3 colour images.
#' * `dataset_imdb()`: movie reviews labelled by sentiment;
#'   `dataset_imdb_word_index()` maps words to indices.
#' * `dataset_reuters()`: newswires labelled by topic.
#' * `dataset_boston_housing()`, `dataset_california_housing()`: house
#'   prices.
#'
#' @param path Where to cache the file, relative to the Keras cache.
#' @param convert Whether to convert the arrays to R (`FALSE` keeps NumPy
#'   arrays).
#' @param label_mode `"fine"` (100 classes) or `"coarse"` (20 classes).
#' @param num_words Keep only the most frequent words (`NULL`: all).
#' @param skip_top Skip the most frequent words.
#' @param maxlen Drop sequences longer than this.
#' @param seed Seed of the shuffle.
#' @param start_char,oov_char,index_from Start-of-sequence index,
#'   out-of-vocabulary index, and the offset of the word indices.
#' @param test_split Fraction of the data held out as the test set.
#' @param version `"large"` or `"small"` California housing data.
#' @returns `list(train = list(x, y), test = list(x, y))`; for the word
#'   indices, a named list of integers.
#' @name datasets
#' @examplesIf kerasbackup:::python_ready() && interactive()
#' mnist <- dataset_mnist()
#' dim(mnist$train$x)
NULL

#' @rdname datasets
#' @export
dataset_mnist <- function(path = "mnist.npz", convert = TRUE) {
  load_keras_dataset("mnist", list(path = path), convert)
}

#' @rdname datasets
#' @export
dataset_fashion_mnist <- function(convert = TRUE) {
  load_keras_dataset("fashion_mnist", list(), convert)
}

#' @rdname datasets
#' @export
dataset_cifar10 <- function(convert = TRUE) {
  load_keras_dataset("cifar10", list(), convert)
}

#' @rdname datasets
#' @export
dataset_cifar100 <- function(label_mode = c("fine", "coarse"), convert = TRUE) {
  load_keras_dataset("cifar100", list(label_mode = match.arg(label_mode)),
                     convert)
}

#' @rdname datasets
#' @export
dataset_imdb <- function(path = "imdb.npz", num_words = NULL, skip_top = 0L,
                         maxlen = NULL, seed = 113L, start_char = 1L,
                         oov_char = 2L, index_from = 3L, convert = TRUE) {
  load_keras_dataset("imdb", list(
    path = path, num_words = as_int_or_null(num_words),
    skip_top = as.integer(skip_top), maxlen = as_int_or_null(maxlen),
    seed = as.integer(seed), start_char = as.integer(start_char),
    oov_char = as.integer(oov_char), index_from = as.integer(index_from)
  ), convert, sequences = TRUE)
}

#' @rdname datasets
#' @export
dataset_imdb_word_index <- function(path = "imdb_word_index.json") {
  with_download_errors("imdb word index",
                       py_keras()$datasets$imdb$get_word_index(path = path))
}

#' @rdname datasets
#' @export
dataset_reuters <- function(path = "reuters.npz", num_words = NULL,
                            skip_top = 0L, maxlen = NULL, test_split = 0.2,
                            seed = 113L, start_char = 1L, oov_char = 2L,
                            index_from = 3L, convert = TRUE) {
  load_keras_dataset("reuters", list(
    path = path, num_words = as_int_or_null(num_words),
    skip_top = as.integer(skip_top), maxlen = as_int_or_null(maxlen),
    test_split = test_split, seed = as.integer(seed),
    start_char = as.integer(start_char), oov_char = as.integer(oov_char),
    index_from = as.integer(index_from)
  ), convert, sequences = TRUE)
}

#' @rdname datasets
#' @export
dataset_reuters_word_index <- function(path = "reuters_word_index.json") {
  with_download_errors("reuters word index",
                       py_keras()$datasets$reuters$get_word_index(path = path))
}

#' @rdname datasets
#' @export
dataset_boston_housing <- function(path = "boston_housing.npz",
                                   test_split = 0.2, seed = 113L,
                                   convert = TRUE) {
  load_keras_dataset("boston_housing", list(
    path = path, test_split = test_split, seed = as.integer(seed)
  ), convert)
}

#' @rdname datasets
#' @export
dataset_california_housing <- function(version = "large",
                                       path = "california_housing.npz",
                                       test_split = 0.2, seed = 113L,
                                       convert = TRUE) {
  load_keras_dataset("california_housing", list(
    version = version, path = path, test_split = test_split,
    seed = as.integer(seed)
  ), convert)
}

load_keras_dataset <- function(name, args, convert, sequences = FALSE) {
  py_keras()
  module <- reticulate::import(paste0("keras.datasets.", name),
                               convert = convert)
  data <- with_download_errors(name, do.call(module$load_data, args))
  item <- function(x, i) {
    if (convert) x[[i]] else reticulate::py_get_item(x, i - 1L)
  }
  part <- function(split) {
    x <- item(item(data, split), 1L)
    y <- item(item(data, split), 2L)
    if (sequences && convert) {
      x <- lapply(x, as.integer)
      y <- as.integer(y)
    }
    list(x = x, y = y)
  }
  list(train = part(1L), test = part(2L))
}

with_download_errors <- function(what, expr, call = rlang::caller_env()) {
  tryCatch(with_py_errors(expr), error = function(e) {
    msg <- conditionMessage(e)
    url <- regmatches(msg, regexpr("https?://[^ :]+", msg))
    if (!length(url) && !grepl("URL fetch failure|urlopen|Errno", msg)) stop(e)
    cli::cli_abort(
      c("Could not download the {what} dataset{if (length(url)) ' from ' else ''}{.url {url}}.",
        i = "Check the network, or put the file in the Keras cache
             ({.path ~/.keras/datasets})."),
      class = c("kerasbackup_download_error", "kerasbackup_error"),
      url = if (length(url)) url else NA_character_,
      call = call, parent = e
    )
  })
}
