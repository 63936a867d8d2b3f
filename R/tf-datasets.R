# The few functions of the R packages tensorflow and tfdatasets that
# keras3's guides use, with the same names and arguments, over TensorFlow's
# Python API (those packages are not needed).

#' The TensorFlow module
#'
#' `tf` is TensorFlow's Python module, imported on first use (so that
#' loading kerasbackup stays fast), as the tensorflow R package provides it:
#' `tf$GradientTape()`, `tf$constant()`, `tf$data`, ...
#'
#' @format A Python module (loaded lazily).
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' tf$constant(1)
tf <- NULL # replaced by a promise in .onLoad()

#' Compile an R function into a TensorFlow graph
#'
#' Like the tensorflow R package's `tf_function()`: the R function is traced
#' once per input signature and then runs as a graph. Inside, R code sees
#' symbolic tensors: use Keras ops (`op_*()`) or `tf$...` for control flow
#' on their values.
#'
#' @param f An R function.
#' @param input_signature Optional list of `tf$TensorSpec`s.
#' @param autograph Whether to convert Python control flow (R functions have
#'   none to convert, so the default is `FALSE`).
#' @param ... More arguments to `tf.function()`, e.g. `jit_compile`.
#' @returns A callable TensorFlow function.
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' square <- tf_function(function(x) x * x)
#' square(tf$constant(3))
tf_function <- function(f, input_signature = NULL, autograph = FALSE, ...) {
  if (!is.function(f)) abort_invalid_arg("f", f, "an R function")
  with_py_errors(tf$`function`(py_rapi()$as_traced_fn(f),
                               input_signature = input_signature,
                               autograph = autograph, ...))
}

#' tf.data datasets
#'
#' The tfdatasets functions keras3's guides use, over `tf.data`:
#'
#' * `tensor_slices_dataset()` makes a dataset with one element per slice
#'   along the first axis. An unnamed list gives tuple elements
#'   (`list(x, y)`), a named list or data frame dict elements.
#' * `dataset_map()` applies an R function to each element (a tuple element
#'   is passed as several arguments); an unnamed list it returns becomes a
#'   tuple.
#' * `dataset_batch()`, `dataset_shuffle()`, `dataset_prefetch()`,
#'   `dataset_cache()`, `dataset_take()`, `dataset_skip()`,
#'   `dataset_repeat()` and `dataset_unbatch()` call the `tf.data.Dataset`
#'   method of the same name.
#' * `as_array_iterator()` iterates over the elements as R arrays.
#'
#' Datasets can be given to `fit()`, `evaluate()` and `predict()`.
#'
#' @param tensors An R array, or a (named) list of arrays, or a data frame.
#' @param dataset A `tf.data.Dataset`.
#' @param map_func An R function.
#' @param num_parallel_calls Optional number of elements processed in
#'   parallel, or `tf$data$AUTOTUNE`.
#' @param batch_size Number of elements per batch.
#' @param drop_remainder Whether to drop a last, smaller batch.
#' @param deterministic Optional: whether parallel processing keeps order.
#' @param buffer_size Elements in the shuffle or prefetch buffer.
#' @param seed Optional shuffle seed.
#' @param reshuffle_each_iteration Whether each pass shuffles anew.
#' @param filename Optional file to cache to (default: memory).
#' @param count Number of elements (`dataset_take()`, `dataset_skip()`) or
#'   repetitions (`dataset_repeat()`, `NULL` for ever).
#' @param ... More arguments to the `tf.data` method.
#' @returns A `tf.data.Dataset`; `as_array_iterator()`: a Python iterator.
#' @name tf-datasets
#' @examplesIf kerasbackup:::python_ready()
#' ds <- tensor_slices_dataset(list(matrix(1:6, 3), c(1, 2, 3))) |>
#'   dataset_map(function(x, y) list(x * 2L, y)) |>
#'   dataset_batch(2)
#' batch <- iter_next(as_iterator(ds))
NULL

#' @rdname tf-datasets
#' @export
tensor_slices_dataset <- function(tensors) {
  with_py_errors(tf$data$Dataset$from_tensor_slices(as_tf_structure(tensors)))
}

#' @rdname tf-datasets
#' @export
dataset_map <- function(dataset, map_func, num_parallel_calls = NULL, ...) {
  if (!is.function(map_func)) abort_invalid_arg("map_func", map_func, "an R function")
  with_py_errors(dataset$map(py_rapi()$as_map_fn(map_func),
                             num_parallel_calls = as_autotune(num_parallel_calls),
                             ...))
}

#' @rdname tf-datasets
#' @export
dataset_batch <- function(dataset, batch_size, drop_remainder = FALSE,
                          num_parallel_calls = NULL, deterministic = NULL) {
  if (!is_whole_number(batch_size)) {
    abort_invalid_arg("batch_size", batch_size, "a positive whole number")
  }
  with_py_errors(dataset$batch(
    as.integer(batch_size), drop_remainder = drop_remainder,
    num_parallel_calls = as_autotune(num_parallel_calls),
    deterministic = deterministic
  ))
}

#' @rdname tf-datasets
#' @export
dataset_shuffle <- function(dataset, buffer_size, seed = NULL,
                            reshuffle_each_iteration = NULL) {
  if (!is_whole_number(buffer_size)) {
    abort_invalid_arg("buffer_size", buffer_size, "a positive whole number")
  }
  with_py_errors(dataset$shuffle(
    as.integer(buffer_size), seed = as_int_or_null(seed),
    reshuffle_each_iteration = reshuffle_each_iteration
  ))
}

#' @rdname tf-datasets
#' @export
dataset_prefetch <- function(dataset, buffer_size = tf$data$AUTOTUNE) {
  with_py_errors(dataset$prefetch(as_autotune(buffer_size)))
}

#' @rdname tf-datasets
#' @export
dataset_cache <- function(dataset, filename = NULL) {
  with_py_errors(dataset$cache(filename %||% ""))
}

#' @rdname tf-datasets
#' @export
dataset_take <- function(dataset, count) {
  with_py_errors(dataset$take(as_count(count)))
}

#' @rdname tf-datasets
#' @export
dataset_skip <- function(dataset, count) {
  with_py_errors(dataset$skip(as_count(count)))
}

#' @rdname tf-datasets
#' @export
dataset_repeat <- function(dataset, count = NULL) {
  with_py_errors(dataset$`repeat`(if (is.null(count)) NULL else as_count(count)))
}

#' @rdname tf-datasets
#' @export
dataset_unbatch <- function(dataset, ...) {
  with_py_errors(dataset$unbatch(...))
}

#' @rdname tf-datasets
#' @export
as_array_iterator <- function(dataset) {
  with_py_errors(dataset$as_numpy_iterator())
}

# R data as tf.data takes it: unnamed lists are tuples (a Python list would
# be read as one stacked tensor), named lists and data frames dicts.
as_tf_structure <- function(x) {
  if (inherits(x, "python.builtin.object")) return(x)
  if (is.data.frame(x)) {
    return(reticulate::dict(lapply(as.list(x), as_tf_structure)))
  }
  if (is.list(x)) {
    parts <- lapply(x, as_tf_structure)
    if (!is.null(names(x)) && all(nzchar(names(x)))) {
      return(reticulate::dict(parts))
    }
    return(do.call(reticulate::tuple, unname(parts)))
  }
  if (is.factor(x)) x <- as.character(x)
  if (is.null(dim(x))) x <- array(x)
  as_numpy(x)
}

as_autotune <- function(x) {
  if (is.null(x) || inherits(x, "python.builtin.object")) return(x)
  as.integer(x)
}

as_count <- function(count, call = rlang::caller_env()) {
  if (!is_whole_number(count, min = -1)) {
    abort_invalid_arg("count", count, "a whole number (-1 for all)", call = call)
  }
  as.integer(count)
}

#' The Keras module
#'
#' Keras' Python module, imported on first use, for what has no R wrapper:
#' `keras$layers$Dense`, `keras$ops$...`.
#'
#' @format A Python module (loaded lazily).
#' @export
keras <- NULL # replaced by a promise in .onLoad()
