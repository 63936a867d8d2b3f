skip_if_keras3_front_end()

skip_if_no_python()

trained_model <- function() {
  set_random_seed(2)
  model <- keras_model_sequential(input_shape = 4) %>%
    layer_dense(3, activation = "relu") %>% layer_dense(1)
  model %>% compile(optimizer = "adam", loss = "mse")
  d <- toy_data(p = 4)
  model %>% fit(d$x, d$y, epochs = 1, verbose = 0)
  model
}

test_that("save_model() and load_model() round-trip a .keras file and raw bytes", {
  model <- trained_model()
  x <- toy_data(p = 4)$x
  file <- withr::local_tempfile(fileext = ".keras")
  expect_identical(save_model(model, file), model)
  loaded <- load_model(file)
  expect_identical(get_weights(loaded), get_weights(model))
  expect_identical(predict(loaded, x, verbose = 0), predict(model, x, verbose = 0))
  expect_identical(optimizer_state(loaded), optimizer_state(model))

  cnd <- plain_message(save_model(model, file))
  expect_true("kerasbackup_file_exists" %in% cnd$class)
  save_model(model, file, overwrite = TRUE)

  bytes <- save_model(model)
  expect_type(bytes, "raw")
  expect_identical(get_weights(load_model(bytes)), get_weights(model))

  expect_true("kerasbackup_file_not_found" %in%
                plain_message(load_model(tempfile(fileext = ".keras")))$class)
})

test_that("load_model() takes R functions as custom objects", {
  scaled_mse <- function(y_true, y_pred) mean((y_true - y_pred)^2) * 2
  model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
  model %>% compile(optimizer = "sgd", loss = scaled_mse)
  file <- withr::local_tempfile(fileext = ".keras")
  save_model(model, file)
  loaded <- load_model(file, custom_objects = list(scaled_mse = scaled_mse))
  d <- toy_data(p = 4)
  expect_equal(evaluate(loaded, d$x, d$y, verbose = 0),
               evaluate(model, d$x, d$y, verbose = 0))
})

test_that("weights, configs and clones", {
  model <- trained_model()
  file <- withr::local_tempfile(fileext = ".weights.h5")
  save_model_weights(model, file)
  other <- clone_model(model)
  expect_identical(length(other$layers), 2L)
  expect_false(identical(get_weights(other), get_weights(model)))
  load_model_weights(other, file)
  expect_identical(get_weights(other), get_weights(model))
  expect_true("kerasbackup_file_exists" %in%
                plain_message(save_model_weights(model, file))$class)

  config <- get_config(model)
  expect_type(config, "list")
  rebuilt <- from_config(config)
  expect_s3_class(rebuilt, "keras.src.models.sequential.Sequential")
  expect_identical(vapply(rebuilt$layers, function(l) l$units, 1L),
                   vapply(model$layers, function(l) l$units, 1L))
  layer_config <- get_config(model$layers[[1]])
  expect_identical(layer_config$units, 3L)
  expect_identical(from_config(layer_config)$units, 3L)
  attr(layer_config, "keras_class") <- NULL
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(from_config(layer_config))$class)

  json <- withr::local_tempfile(fileext = ".json")
  save_model_config(model, json)
  from_json <- load_model_config(json)
  expect_identical(length(from_json$layers), 2L)
})

test_that("a model with an R-defined custom layer saves and loads", {
  layer_scale <- Layer(
    "ScaleByWeight",
    initialize = function(init = 2, ...) {
      super$initialize(...)
      self$init <- init
    },
    build = function(input_shape) {
      self$w <- self$add_weight(shape = shape(), initializer = keras$initializers$Constant(self$init))
    },
    call = function(inputs) inputs * self$w,
    get_config = function() {
      modifyList(super$get_config(), list(init = self$init))
    }
  )
  set_random_seed(8)
  model <- keras_model_sequential(input_shape = 4) %>%
    layer_dense(2) %>%
    layer_scale(init = 3)
  model %>% compile(optimizer = "sgd", loss = "mse")
  d <- toy_data(p = 4)
  model %>% fit(d$x, cbind(d$y, d$y), epochs = 1, verbose = 0)
  file <- withr::local_tempfile(fileext = ".keras")
  save_model(model, file)

  for (custom in list(list(layer_scale), list(ScaleByWeight = layer_scale))) {
    loaded <- load_model(file, custom_objects = custom)
    expect_identical(get_weights(loaded), get_weights(model))
    expect_identical(predict(loaded, d$x, verbose = 0), predict(model, d$x, verbose = 0))
    expect_identical(loaded$layers[[2]]$init, 3)
  }
  cnd <- plain_message(load_model(file))
  expect_true("kerasbackup_python_error" %in% cnd$class)
  expect_match(cnd$message, "ScaleByWeight", fixed = TRUE)

  config <- get_config(model$layers[[2]])
  expect_identical(config$init, 3)
  expect_identical(from_config(config)$init, 3)
})
