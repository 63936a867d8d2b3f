skip_if_keras3_front_end()

skip_if_no_python()

test_that("tensor_slices_dataset() makes tuples from lists and dicts from named lists", {
  x <- matrix(1:6, 3)
  ds <- tensor_slices_dataset(list(x, c(10, 20, 30)))
  first <- iter_next(as_iterator(ds))
  expect_length(first, 2L)
  expect_identical(as.array(first[[1]]), array(c(1L, 4L)))
  expect_identical(as.numeric(first[[2]]), 10)

  named <- iter_next(as_iterator(tensor_slices_dataset(list(a = x, b = 1:3))))
  expect_identical(sort(names(named)), c("a", "b"))
  df <- iter_next(as_iterator(tensor_slices_dataset(data.frame(u = 1:3, v = c("p", "q", "r")))))
  expect_identical(sort(names(df)), c("u", "v"))
})

test_that("dataset_map() calls an R function with the tuple's parts", {
  ds <- tensor_slices_dataset(list(matrix(1:6, 3), 1:3)) |>
    dataset_map(function(x, y) list(x * 2L, y + 100L)) |>
    dataset_batch(2)
  batches <- iterate(as_array_iterator(ds), simplify = FALSE)
  expect_length(batches, 2L)
  expect_identical(batches[[1]][[1]], matrix(c(2L, 4L, 8L, 10L), 2))
  expect_identical(batches[[2]][[2]], array(103L))
  single <- tensor_slices_dataset(c(1, 2, 3)) |> dataset_map(\(x) x / 2)
  expect_identical(unlist(iterate(as_array_iterator(single))), c(.5, 1, 1.5))
})

test_that("batch, shuffle, take, skip, repeat, cache, prefetch, unbatch", {
  values <- function(ds) as.numeric(unlist(iterate(as_array_iterator(ds), simplify = FALSE)))
  ds <- tensor_slices_dataset(as.numeric(1:10))
  expect_identical(values(dataset_take(ds, 3)), c(1, 2, 3))
  expect_identical(values(dataset_skip(ds, 8)), c(9, 10))
  expect_identical(values(dataset_repeat(dataset_take(ds, 2), 2)), c(1, 2, 1, 2))
  expect_identical(values(dataset_cache(dataset_prefetch(ds))), as.numeric(1:10))
  b <- dataset_batch(ds, 4, drop_remainder = TRUE)
  expect_identical(length(iterate(as_iterator(b), simplify = FALSE)), 2L)
  expect_identical(values(dataset_unbatch(b)), as.numeric(1:8))
  s1 <- values(dataset_shuffle(ds, 10, seed = 1))
  s2 <- values(dataset_shuffle(ds, 10, seed = 1))
  expect_identical(s1, s2)
  expect_setequal(s1, 1:10)
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(dataset_batch(ds, 0))$class)
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(dataset_map(ds, "not a function"))$class)
})

test_that("tf and tf_function() work as the tensorflow package's do", {
  expect_identical(as.numeric(tf$constant(2) + tf$constant(3)), 5)
  calls <- 0L
  square <- tf_function(function(x) {
    calls <<- calls + 1L
    x * x
  })
  expect_identical(as.numeric(square(tf$constant(3))), 9)
  expect_identical(as.numeric(square(tf$constant(4))), 16)
  expect_identical(calls, 1L)  # traced once, then run as a graph
  w <- tf$Variable(1)
  with(tf$GradientTape() %as% tape, {
    loss <- w * w * 3
  })
  expect_identical(as.numeric(tape$gradient(loss, w)), 6)
})

test_that("array_reshape() fills in C order, as keras3's does", {
  expect_equal(array_reshape(1:6, c(2, 3)), matrix(1:6, 2, byrow = TRUE))
  expect_equal(array_reshape(matrix(1:6, 2, byrow = TRUE), 6), array(1:6))
  expect_identical(py_to_r(np_array(matrix(1:6, 2), dtype = "float32")),
                   matrix(as.numeric(1:6), 2))
})
