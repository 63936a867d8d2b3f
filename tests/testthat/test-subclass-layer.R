skip_if_keras3_front_end()

# Layers and models defined in R with Layer() and Model().

keras_py <- function() kerasbackup:::py_keras()

layer_linear <- Layer(
  "Linear",
  initialize = function(units = 32, ...) {
    super$initialize(...)
    self$units <- as.integer(units)
  },
  build = function(input_shape) {
    self$w <- self$add_weight(shape = shape(input_shape[[length(input_shape)]],
                                            self$units),
                              initializer = "random_normal", name = "w")
    self$b <- self$add_weight(shape = shape(self$units), initializer = "zeros",
                              name = "b")
  },
  call = function(inputs) op_add(op_matmul(inputs, self$w), self$b),
  get_config = function() {
    config <- super$get_config()
    config$units <- self$units
    config
  },
)

test_that("a Layer() generator makes layers, composing like keras3's wrappers", {
  skip_if_no_python()
  expect_s3_class(layer_linear, "kerasbackup_class_generator")
  expect_identical(names(formals(layer_linear)), c("object", "units", "..."))
  expect_output(print(layer_linear), "<layer class Linear>")
  expect_identical(new_layer_class, Layer)

  layer <- layer_linear(units = 2, name = "lin")
  expect_s3_class(layer, "keras.src.layers.layer.Layer")
  expect_identical(layer$name, "lin")
  expect_false(layer$built)

  # Called on a tensor: returns the output, with R's arithmetic.
  x <- matrix(c(1, 2, 3, 4, 5, 6), 2, byrow = TRUE)
  out <- layer(x)
  w <- get_weights(layer)
  expect_identical(lengths(w), c(6L, 2L))
  w[[1]] <- matrix(c(1, 0, 0, 1, 1, 1), 3, byrow = TRUE)
  w[[2]] <- array(c(0.5, -1))
  set_weights(layer, w)
  expect_equal(as.array(layer(x)$numpy()),
               x %*% w[[1]] + matrix(w[[2]], 2, 2, byrow = TRUE),
               ignore_attr = TRUE)

  # Composed with a tensor and with a Sequential model.
  input <- keras_input(shape = 3)
  expect_identical(as.integer(layer_linear(input, units = 5)$shape[[2]]), 5L)
  model <- keras_model_sequential(input_shape = 3) %>% layer_linear(units = 4)
  expect_identical(length(model$layers), 1L)
  expect_identical(model$layers[[1]]$units, 4L)
})

test_that("R methods are seen by Keras with their own arguments", {
  skip_if_no_python()
  inspect <- reticulate::import("inspect")
  layer <- Layer("Sig",
    initialize = function(rate, scale = 2, ...) {
      super$initialize(...)
      self$rate <- rate
    },
    call = function(inputs, training = NULL, mask = NULL) inputs
  )(rate = 0.5)
  expect_identical(reticulate::py_str(inspect$signature(layer$call)),
                   "(inputs, training=None, mask=None)")
  expect_identical(reticulate::py_str(inspect$signature(layer$`__init__`)),
                   "(rate, scale=2.0, *args, **kwargs)")
  expect_true(layer$`_call_has_training_arg`)
  expect_true(layer$`_call_has_mask_arg`)
  # Arguments left out are left to R's defaults: missing() is TRUE in R.
  seen <- new.env()
  probe <- Layer("Probe",
    initialize = function(a = c(1, 2), b = 5, ...) {
      super$initialize(...)
      seen$a <- a
      seen$b_missing <- missing(b)
    },
    call = function(inputs) inputs
  )
  probe()
  expect_identical(seen$a, c(1, 2))
  expect_true(seen$b_missing)
  probe(b = 5)
  expect_false(seen$b_missing)
})

test_that("training= reaches call(); a layer's own seed generator drives its randomness", {
  skip_if_no_python()
  layer_noise <- Layer("Noise",
    initialize = function(seed = 1, ...) {
      super$initialize(...)
      self$seed_generator <- random_seed_generator(seed)
    },
    call = function(inputs, training = NULL) {
      if (isTRUE(training)) {
        return(op_add(inputs, random_normal(op_shape(inputs),
                                            seed = self$seed_generator)))
      }
      inputs
    }
  )
  x <- matrix(0, 2, 3)
  a <- layer_noise(seed = 3)
  b <- layer_noise(seed = 3)
  expect_identical(as.array(a(x)$numpy()), matrix(0, 2, 3), ignore_attr = TRUE)
  first <- a(x, training = TRUE)$numpy()
  expect_false(all(first == 0))
  expect_false(identical(first, a(x, training = TRUE)$numpy()))
  expect_identical(b(x, training = TRUE)$numpy(), first)
  # The generator's state is one of the layer's variables (so it is saved).
  expect_identical(length(a$variables), 1L)
  expect_identical(length(a$weights), 0L)
})

test_that("self, super() and super$, and private state work in every method", {
  skip_if_no_python()
  layer_counting <- Layer("Counting",
    initialize = function(...) {
      super()$initialize(...)
      private$calls <- 0L
    },
    build = function(input_shape) {
      super()$build(input_shape)
      private$built_with <- input_shape[[2]]
    },
    call = function(inputs) {
      private$calls <- private$calls + 1L
      inputs
    },
    count = function() private$calls,
    width = function() private$built_with,
    describe = function() private$label(),
    private = list(label = function() paste(self$name, "has", private$calls, "calls"))
  )
  a <- layer_counting(name = "a")
  b <- layer_counting(name = "b")
  a(matrix(1, 1, 3)); a(matrix(1, 1, 3)); b(matrix(1, 1, 5))
  expect_identical(a$count(), 2L)
  expect_identical(b$count(), 1L)
  expect_identical(a$width(), 3L)
  expect_identical(b$width(), 5L)
  expect_identical(a$describe(), "a has 2 calls")
  expect_true(a$built)
})

test_that("get_config() and from_config() work as in keras3", {
  skip_if_no_python()
  keras <- keras_py()
  layer <- layer_linear(units = 3, name = "lin3")
  config <- layer$get_config()
  expect_identical(config$units, 3L)
  expect_identical(config$name, "lin3")
  again <- layer$from_config(config)
  expect_identical(again$units, 3L)
  expect_identical(class(again)[[1]], class(layer)[[1]])

  # Without get_config(), plain initialize() arguments make the config.
  layer_auto <- Layer("Auto",
    initialize = function(a = 1, b = "x", ...) {
      super$initialize(...)
      self$a <- a
    },
    call = function(x) x)
  config <- layer_auto(a = 5)$get_config()
  expect_identical(config[c("a", "b")], list(a = 5, b = "x"))

  # A from_config() of our own is a class method, with __class__ in scope.
  layer_scaled <- Layer("Scaled",
    initialize = function(k = 1, ...) {
      super$initialize(...)
      self$k <- k
    },
    call = function(x) x,
    get_config = function() list(k = self$k, name = self$name),
    from_config = function(config) {
      config$k <- config$k * 10
      do.call(`__class__`, config)
    })
  expect_identical(layer_scaled(k = 2)$from_config(list(k = 2))$k, 20)

  # Inside a functional model: config round trip, .keras file, clone.
  set_random_seed(1)
  input <- keras_input(shape = 3)
  model <- keras_model(input, layer_linear(input, units = 2))
  revived <- keras$Model$from_config(model$get_config(),
                                     custom_objects = list(Linear = layer_linear))
  expect_identical(revived$layers[[2]]$units, 2L)
  path <- withr::local_tempfile(fileext = ".keras")
  model$save(path)
  loaded <- keras$saving$load_model(path, custom_objects = list(Linear = layer_linear))
  expect_identical(get_weights(loaded), get_weights(model))
  expect_identical(class(keras$models$clone_model(model)$layers[[2]])[[1]],
                   class(model$layers[[2]])[[1]])
})

test_that("methods work with or without an explicit `self`; a registered class saves and loads", {
  skip_if_no_python()
  # The same layer twice: methods written as keras3's guides write them,
  # with `self` as first argument, and without it.
  with_self <- Layer("ScaleWithSelf",
    initialize = function(self, factor, ...) {
      super$initialize(...)
      self$factor <- factor
    },
    build = function(self, input_shape) {
      self$w <- self$add_weight(shape = shape(input_shape[[2]], 1L),
                                initializer = "ones", name = "w")
    },
    call = function(self, x) op_matmul(x * self$factor, self$w),
    get_config = function(self) {
      modifyList(super$get_config(), list(factor = self$factor))
    }
  )
  without_self <- Layer("ScaleWithoutSelf",
    initialize = function(factor, ...) {
      super$initialize(...)
      self$factor <- factor
    },
    build = function(input_shape) {
      self$w <- self$add_weight(shape = shape(input_shape[[2]], 1L),
                                initializer = "ones", name = "w")
    },
    call = function(x) op_matmul(x * self$factor, self$w),
    get_config = function() {
      modifyList(super$get_config(), list(factor = self$factor))
    }
  )
  x <- matrix(c(1, 2, 3, 4, 5, 6), 2)
  for (gen in list(with_self, without_self)) {
    expect_identical(names(formals(gen)), c("object", "factor", "..."))
    layer <- gen(factor = 0.5)
    expect_equal(as.array(layer(x)), matrix(rowSums(x) * 0.5), ignore_attr = TRUE)
    expect_identical(layer$get_config()$factor, 0.5)
    # Positional arguments after a tensor, as in `inputs |> layer_custom(0.5)`.
    out <- keras_input(shape(3)) |> gen(0.5)
    expect_identical(out$shape[[2]], 1L)
  }

  # register_keras_serializable() returns the generator (keras3 does), which
  # still composes; a saved model then loads without custom_objects.
  registered <- register_keras_serializable(with_self, package = "kbtest_self")
  expect_identical(registered, with_self)
  expect_identical(keras_py()$saving$get_registered_name(reticulate::r_to_py(with_self)),
                   "kbtest_self>ScaleWithSelf")
  inputs <- keras_input(shape(3))
  model <- keras_model(inputs, inputs |> registered(0.5))
  path <- withr::local_tempfile(fileext = ".keras")
  save_model(model, path)
  loaded <- load_model(path)
  expect_identical(class(loaded$layers[[2]])[[1]], class(model$layers[[2]])[[1]])
  expect_identical(loaded$layers[[2]]$factor, 0.5)
  expect_equal(as.array(loaded(x)), as.array(model(x)))
})

test_that("from_config() can splice the config into cls(), the class name or __class__", {
  skip_if_no_python()
  for (maker in c("cls", "Spliced", "__class__")) {
    layer_spliced <- Layer("Spliced",
      initialize = function(k = 1, ...) {
        super$initialize(...)
        self$k <- k
      },
      call = function(x) x,
      get_config = function() modifyList(super$get_config(), list(k = self$k)),
      from_config = eval(bquote(function(config) {
        config$k <- config$k + 1
        .(as.name(maker))(!!!config)
      }))
    )
    revived <- layer_spliced(k = 2, name = "sp")$from_config(
      layer_spliced(k = 2, name = "sp")$get_config())
    expect_identical(revived$k, 3)
    expect_identical(revived$name, "sp")
  }
  # Any Python class called from R splices too.
  config <- list(units = 2L, name = "spliced_dense")
  expect_identical(keras_py()$layers$Dense(!!!config, )$name, "spliced_dense")
})

test_that("inherit takes a Python class or another generator", {
  skip_if_no_python()
  keras <- keras_py()
  layer_double_dense <- Layer("DoubleDense",
    inherit = keras$layers$Dense,
    call = function(inputs) op_multiply(super$call(inputs), 2)
  )
  layer <- layer_double_dense(units = 2L, kernel_initializer = "ones")
  expect_identical(as.array(layer(matrix(1, 1, 3))$numpy()), matrix(6, 1, 2),
                   ignore_attr = TRUE)
  layer_linear_plus <- Layer("LinearPlus",
    inherit = layer_linear,
    call = function(inputs) op_add(super()$call(inputs), 1)
  )
  layer <- layer_linear_plus(units = 2)
  expect_s3_class(layer, "<r>.Linear")
  out <- layer(matrix(0, 1, 4))$numpy()
  expect_identical(as.array(out), matrix(1, 1, 2), ignore_attr = TRUE)
})

test_that("bad class definitions are refused clearly", {
  err <- plain_message(Layer(3))
  expect_true("kerasbackup_invalid_argument" %in% err$class)
  expect_match(err$message, "`classname`", fixed = TRUE)
  err <- plain_message(Loss("X", function(x) x, function(y) y))
  expect_match(err$message, "must be named")
  err <- plain_message(Layer("X", initialize = function() NULL,
                             `__init__` = function() NULL))
  expect_match(err$message, "not both")
  err <- plain_message(Layer("X", private = list(1)))
  expect_match(err$message, "`private`", fixed = TRUE)
  skip_if_no_python()
  bad <- Layer("Bad", inherit = 42)
  err <- plain_message(bad())
  expect_match(err$message, "`inherit`", fixed = TRUE)
})

# ---------------------------------------------------------------- Model()

test_that("a Model() subclass with its own layers and call() trains with fit()", {
  skip_if_no_python()
  mlp <- Model("MLP",
    initialize = function(hidden = 8, ...) {
      super$initialize(...)
      self$hidden <- layer_dense(units = hidden, activation = "relu")
      self$out <- layer_linear(units = 1)
    },
    call = function(inputs) self$out(self$hidden(inputs))
  )
  expect_identical(new_model_class, Model)
  expect_output(print(mlp), "<model class MLP>")
  set_random_seed(1)
  model <- mlp(hidden = 4, name = "mlp")
  expect_s3_class(model, "keras.src.models.model.Model")
  model %>% compile(optimizer = optimizer_sgd(0.05), loss = "mse")
  data <- toy_data(n = 24)
  history <- model %>% fit(data$x, data$y, epochs = 3, batch_size = 8, verbose = 0)
  expect_identical(length(history$metrics$loss), 3L)
  expect_true(history$metrics$loss[[3]] < history$metrics$loss[[1]])
  expect_identical(dim(predict(model, data$x)), c(24L, 1L))
  expect_identical(length(model$trainable_weights), 4L)
})

test_that("a Model() with a custom train_step() and test_step() drives fit() and evaluate()", {
  skip_if_no_python()
  tf <- reticulate::import("tensorflow")
  `%as%` <- reticulate::`%as%`
  step_model <- new_model_class("StepModel",
    initialize = function(...) {
      super$initialize(...)
      self$loss_tracker <- metric_mean(name = "custom_loss")
    },
    train_step = function(data) {
      c(x, y = NULL, sample_weight = NULL) %<-% data
      with(tf$GradientTape() %as% tape, {
        y_pred <- self(x, training = TRUE)
        loss <- self$compute_loss(y = y, y_pred = y_pred)
      })
      grads <- tape$gradient(loss, self$trainable_variables)
      self$optimizer$apply(grads, self$trainable_variables)
      self$loss_tracker$update_state(loss)
      list(custom_loss = self$loss_tracker$result())
    },
    test_step = function(data) {
      c(x, y = NULL, sample_weight = NULL) %<-% data
      y_pred <- self(x, training = FALSE)
      self$loss_tracker$update_state(self$compute_loss(y = y, y_pred = y_pred))
      list(custom_loss = self$loss_tracker$result())
    },
    metrics = active_property(function() list(self$loss_tracker))
  )
  set_random_seed(2)
  input <- keras_input(shape = 6)
  model <- step_model(input, layer_dense(input, 1))
  model %>% compile(optimizer = optimizer_sgd(0.05), loss = "mse")
  data <- toy_data(n = 32)
  history <- model %>% fit(data$x, data$y, epochs = 4, batch_size = 8,
                           validation_split = 0.25, verbose = 0)
  expect_identical(names(history$metrics), c("custom_loss", "val_custom_loss"))
  loss <- history$metrics$custom_loss
  expect_true(all(diff(loss) < 0))
  result <- model %>% evaluate(data$x, data$y, batch_size = 8)
  mse <- mean((predict(model, data$x) - data$y)^2)
  expect_equal(unname(result[["custom_loss"]]), mse, tolerance = 1e-5)
})

test_that("train_step() gets `data` as Keras' fit() passes it", {
  skip_if_no_python()
  tf <- reticulate::import("tensorflow")
  traced <- function(x, ...) {
    seen <- new.env()
    probe <- Model("Probe",
      train_step = function(data) {
        seen$data <- if (is.list(data)) length(data) else "x alone"
        x <- if (is.list(data)) data[[1]] else data
        list(out = op_sum(self(x)))
      })
    input <- keras_input(shape = 3)
    model <- probe(input, layer_dense(input, 1))
    model %>% compile(optimizer = "sgd")
    model %>% fit(x, ..., epochs = 1, batch_size = 4, verbose = 0)
    seen$data
  }
  x <- matrix(1, 8, 3)
  y <- matrix(1, 8, 1)
  expect_identical(traced(x), "x alone")
  expect_identical(traced(x, y), 2L)
  expect_identical(traced(x, y, sample_weight = rep(1, 8)), 3L)
  expect_identical(traced(tf$data$Dataset$from_tensor_slices(x)$batch(4L)),
                   "x alone")
})

test_that("calls to Python methods and functions accept a trailing comma", {
  skip_if_no_python()
  layer_scale <- Layer("TrailingScale",
    build = function(input_shape) {
      self$scale <- self$add_weight(
        shape = shape(input_shape[[2]]),
        initializer = "ones",
        trainable = TRUE,
      )
    },
    call = function(inputs) op_multiply(inputs, self$scale)
  )
  layer <- layer_scale()
  expect_identical(as.array(layer(matrix(2, 1, 3))$numpy()), matrix(2, 1, 3),
                   ignore_attr = TRUE)
  main <- reticulate::py_run_string("def add2(a, b=0):\n    return a + b",
                                    local = TRUE)
  expect_identical(main$add2(1L, b = 2L, ), 3L)
  expect_identical(layer$count_params(), 3L)
  expect_invisible(layer$set_weights(list(array(c(1, 2, 3))), ))
  expect_identical(as.vector(layer$get_weights()[[1]]), c(1, 2, 3))
})
