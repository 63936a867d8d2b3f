skip_if_keras3_front_end()

skip_if_no_python()

test_that("adapt(), get_vocabulary() and set_vocabulary() on preprocessing layers", {
  norm <- keras$layers$Normalization()
  adapt(norm, matrix(c(1, 2, 3, 10, 20, 30), 3))
  expect_equal(as.numeric(norm$mean), c(2, 20), tolerance = 1e-6)
  lookup <- keras$layers$StringLookup()
  adapt(lookup, c("b", "a", "b", "c", "b", "a"))
  expect_identical(get_vocabulary(lookup), c("[UNK]", "b", "a", "c"))
  expect_identical(get_vocabulary(lookup, include_special_tokens = FALSE), c("b", "a", "c"))
  set_vocabulary(lookup, c("x", "y"))
  expect_identical(get_vocabulary(lookup), c("[UNK]", "x", "y"))
  ds <- tensor_slices_dataset(matrix(c(0, 4, 0, 8), 2)) |> dataset_batch(2)
  adapt(norm, ds)
  expect_equal(as.numeric(norm$mean), c(2, 4), tolerance = 1e-6)
})

test_that("reset_state(), count_params(), get_state_tree() and set_state_tree()", {
  metric <- keras$metrics$Mean()
  metric$update_state(c(1, 2, 3))
  expect_equal(as.numeric(metric$result()), 2)
  reset_state(metric)
  expect_equal(as.numeric(metric$result()), 0)

  set_random_seed(9)
  model <- keras_model_sequential(input_shape = 3, name = "tree_model") %>%
    layer_dense(2, name = "tree_dense")
  model %>% compile(optimizer = "sgd", loss = "mse")
  expect_identical(count_params(model), 8L)
  tree <- get_state_tree(model)
  kernel <- tree$trainable_variables$tree_model$tree_dense$kernel
  expect_identical(dim(kernel), c(3L, 2L))
  tree$trainable_variables$tree_model$tree_dense$kernel <- kernel * 0 + 1
  set_state_tree(model, tree)
  expect_identical(get_weights(model)[[1]], matrix(1, 3, 2))
})

test_that("custom objects: registration, the global table and scopes", {
  twice <- function(x) x * 2
  registered <- register_keras_serializable(twice, package = "kbtest")
  expect_identical(keras$saving$get_registered_name(registered), "kbtest>twice")
  expect_true("kbtest>twice" %in% names(get_custom_objects()))

  old <- set_custom_objects(list(triple = function(x) x * 3), clear = FALSE)
  expect_true("triple" %in% names(get_custom_objects()))
  set_custom_objects(old)
  expect_false("triple" %in% names(get_custom_objects()))

  found <- with_custom_object_scope(list(halve = function(x) x / 2), {
    keras$saving$get_registered_object("halve")
  })
  expect_equal(as.numeric(found(tf$constant(8))), 4)
  expect_null(keras$saving$get_registered_object("halve"))
})

test_that("zip_lists() and named_list()", {
  expect_identical(zip_lists(list(1, 2), list("a", "b")),
                   list(list(1, "a"), list(2, "b")))
  expect_identical(zip_lists(list(list(x = 1, y = 2), list(y = "b", x = "a"))),
                   list(x = list(1, "a"), y = list(2, "b")))
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(zip_lists(list(1, 2), list(1)))$class)
  u <- 1
  v <- "b"
  expect_identical(named_list(u, v, w = 3), list(u = 1, v = "b", w = 3))
})

test_that("export_savedmodel() writes a SavedModel directory", {
  model <- keras_model_sequential(input_shape = 3) %>% layer_dense(1)
  dir <- file.path(withr::local_tempdir(), "exported")
  expect_identical(export_savedmodel(model, dir), dir)
  expect_true(file.exists(file.path(dir, "saved_model.pb")))
})

test_that("a layer object called from R composes like a layer function", {
  dense <- layer_dense(units = 3, name = "shared_dense")
  model <- keras_model_sequential(input_shape = 4) |> dense()
  expect_identical(model$layers[[1]]$name, "shared_dense")
  expect_identical(dim(dense(op_ones(c(2, 4)))), c(2L, 3L))
  input <- keras_input(4)
  expect_identical(dim(dense(input)), c(NA, 3L))
  expect_identical(dim(model(op_ones(c(5, 4)))), c(5L, 3L))
  outer <- keras_model_sequential(input_shape = 4) |> model()
  expect_identical(length(outer$layers), 1L)
})

test_that("a loss object called from R takes keras3's argument names", {
  loss <- loss_mean_squared_error()
  y_true <- op_convert_to_tensor(matrix(c(0, 1, 2, 3), 2))
  y_pred <- op_convert_to_tensor(matrix(c(1, 1, 2, 5), 2))
  expected <- as.numeric(loss(y_true, y_pred))
  expect_equal(expected, mean(c(1, 0, 0, 4)) , tolerance = 1e-6)
  expect_equal(as.numeric(loss(y = y_true, y_pred = y_pred)), expected)
  expect_equal(as.numeric(loss(y_pred = y_pred, y_true = y_true,
                               sample_weight = c(1, 0))),
               mean(c(1, 0)) / 2, tolerance = 1e-6)
})
