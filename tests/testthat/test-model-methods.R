skip_if_keras3_front_end()

skip_if_no_python()

small_model <- function() {
  set_random_seed(1)
  model <- keras_model_sequential(input_shape = 4, name = "small") %>%
    layer_dense(3, activation = "relu", name = "hidden") %>%
    layer_dense(1, name = "out")
  model %>% compile(optimizer = "adam", loss = "mse", metrics = "mae")
  model
}

test_that("summary(), format() and print() show Keras' layer table", {
  model <- small_model()
  out <- capture.output(res <- summary(model))
  expect_identical(res, model)
  text <- paste(out, collapse = "\n")
  expect_match(text, 'Model: "small"', fixed = TRUE)
  expect_match(text, "hidden (Dense)", fixed = TRUE)
  expect_match(text, "(None, 3)", fixed = TRUE)
  expect_match(text, "Total params: 19", fixed = TRUE)
  expect_identical(format(model), text)
  expect_identical(capture.output(print(model)), out)
  expect_identical(capture.output(model), out)
  freeze_weights(model, from = "hidden", to = "hidden")
  expect_match(format(model), "Trainable", fixed = TRUE)
  expect_lte(max(nchar(strsplit(format(model, line_length = 60), "\n")[[1]])), 60)
})

test_that("plot() draws a model through plot_model(), or says what is missing", {
  model <- small_model()
  file <- withr::local_tempfile(fileext = ".png")
  expect_identical(plot(model, show_shapes = TRUE, to_file = file), file)
  expect_true(file.size(file) > 0)
  expect_identical(readBin(file, "raw", 4), as.raw(c(0x89, 0x50, 0x4e, 0x47)))
  pdf(NULL)
  on.exit(dev.off(), add = TRUE)
  expect_null(plot(model))

  withr::local_envvar(PATH = "")
  cnd <- plain_message(plot(model, to_file = file))
  expect_true("kerasbackup_plot_unavailable" %in% cnd$class)
  expect_match(cnd$message, "Graphviz", fixed = TRUE)
})

test_that("get_layer(), pop_layer(), freeze_weights() and unfreeze_weights()", {
  model <- small_model()
  expect_identical(get_layer(model, "out")$name, "out")
  expect_identical(get_layer(model, index = 1)$name, "hidden")
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(get_layer(model))$class)
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(get_layer(model, index = 0))$class)

  trainable <- function(m) vapply(m$layers, function(l) l$trainable, TRUE)
  freeze_weights(model)
  expect_false(model$trainable)
  unfreeze_weights(model)
  expect_identical(trainable(model), c(TRUE, TRUE))
  freeze_weights(model, to = 1)
  expect_identical(trainable(model), c(FALSE, TRUE))
  unfreeze_weights(model, from = "out")
  expect_identical(trainable(model), c(FALSE, TRUE))
  freeze_weights(model, which = function(layer) layer$name == "out")
  expect_identical(trainable(model), c(TRUE, FALSE))
  freeze_weights(model, which = "hidden")
  expect_identical(trainable(model), c(FALSE, TRUE))
  freeze_weights(model, from = -1)
  expect_identical(trainable(model), c(TRUE, FALSE))
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(freeze_weights(model, from = "nope"))$class)

  pop_layer(model)
  expect_identical(length(model$layers), 1L)
  expect_identical(model$layers[[1]]$name, "hidden")
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(pop_layer(keras$layers$Dense(1L)))$class)
})

test_that("evaluate() and the *_on_batch() steps return named lists", {
  model <- small_model()
  d <- toy_data(p = 4)
  res <- evaluate(model, d$x, d$y, verbose = 0)
  expect_type(res, "list")
  expect_identical(names(res), c("loss", "mae"))
  expect_true(is.numeric(res$loss) && length(res$loss) == 1L)

  before <- get_weights(model)
  step <- train_on_batch(model, d$x[1:8, ], d$y[1:8])
  expect_identical(names(step), c("loss", "mae"))
  expect_false(identical(get_weights(model), before))
  test <- test_on_batch(model, d$x[1:8, ], d$y[1:8])
  expect_identical(names(test), c("loss", "mae"))
  p <- predict_on_batch(model, d$x[1:8, ])
  expect_identical(dim(p), c(8L, 1L))
  expect_equal(p, predict(model, d$x[1:8, ], verbose = 0), tolerance = 1e-6)
})

test_that("compile(), fit(), evaluate() and predict() take a trailing comma", {
  model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
  model %>% compile(optimizer = "sgd", loss = "mse", metrics = list("mae"), )
  d <- toy_data(p = 4)
  h <- model %>% fit(d$x, d$y, epochs = 1, verbose = 0, )
  expect_length(h$metrics$loss, 1L)
  expect_named(evaluate(model, d$x, d$y, verbose = 0, ), c("loss", "mae"))
  expect_identical(dim(predict(model, d$x, verbose = 0, )), c(40L, 1L))
})

test_that("verbose = TRUE/FALSE are taken as 1/0, as keras3 takes them", {
  model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
  model %>% compile(optimizer = "sgd", loss = "mse")
  d <- toy_data(p = 4)
  quiet <- reticulate::py_capture_output({
    h <- model %>% fit(d$x, d$y, epochs = 1, verbose = FALSE)
    evaluate(model, d$x, d$y, verbose = FALSE)
    predict(model, d$x, verbose = FALSE)
  }, type = "stdout")
  expect_identical(quiet, "")
  expect_length(h$metrics$loss, 1L)
  expect_match(reticulate::py_capture_output(evaluate(model, d$x, d$y, verbose = TRUE),
                                             type = "stdout"),
               "loss")
})

test_that("compile() converts steps_per_execution and weighted_metrics as keras3 does", {
  d <- toy_data(p = 4)
  model <- keras_model_sequential(input_shape = 4) %>% layer_dense(1)
  model %>% compile(optimizer = "sgd", loss = "mse", steps_per_execution = 2,
                    weighted_metrics = "mae")
  expect_identical(model$steps_per_execution, 2L)
  h <- model %>% fit(d$x, d$y, epochs = 1, batch_size = 8, verbose = 0,
                     sample_weight = rep(1, 40))
  expect_named(h$metrics, c("loss", "mae"))
  # an R function among the weighted metrics, and keras3's formals
  model %>% compile(optimizer = "sgd", loss = "mse",
                    weighted_metrics = function(y_true, y_pred) op_mean(op_abs(y_true - y_pred)))
  h <- model %>% fit(d$x, d$y, epochs = 1, verbose = 0)
  expect_named(h$metrics, c("custom_weighted_metric_1", "loss"), ignore.order = TRUE)
  fmls <- formals(kerasbackup:::compile.keras.src.models.model.Model)
  expect_identical(names(fmls)[-(1:5)],
                   c("loss_weights", "weighted_metrics", "run_eagerly",
                     "steps_per_execution", "jit_compile", "auto_scale_loss"))
  err <- plain_message(compile(model, optimizer = "sgd", loss = "mse",
                               steps_per_execution = 1.5))
  expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
  expect_identical(err$cnd$arg, "steps_per_execution")
})

test_that("get_weights() takes keras3's trainable argument", {
  model <- keras_model_sequential(input_shape = 3) %>% layer_dense(2) %>%
    layer_batch_normalization()
  all <- get_weights(model)
  expect_length(all, 6L)
  trainable <- get_weights(model, trainable = TRUE)
  frozen <- get_weights(model, trainable = FALSE)
  expect_length(trainable, 4L)
  expect_length(frozen, 2L)
  expect_identical(c(trainable, frozen), all)
  expect_identical(get_weights(model, trainable = NA), all)
  err <- plain_message(get_weights(model, trainable = "yes"))
  expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
  expect_identical(err$cnd$arg, "trainable")
})

test_that("evaluate() and predict() check batch_size and steps", {
  model <- small_model()
  d <- toy_data(p = 4)
  bad <- list(NA, 2.5, 0, -1, "a", 1e12)
  calls <- list(
    evaluate = function(...) evaluate(model, d$x, d$y, verbose = 0, ...),
    predict = function(...) predict(model, d$x, verbose = 0, ...)
  )
  for (fn in names(calls)) for (name in c("batch_size", "steps")) for (value in bad) {
    args <- setNames(list(value), name)
    label <- paste0(fn, "(", name, " = ", deparse(value), ")")
    err <- plain_message(do.call(calls[[fn]], args))
    expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
    expect_identical(err$cnd$arg, name, label = label)
    expect_identical(err$cnd$value, value, label = label)
    expect_match(err$message, "`NULL` or a whole number from 1 to", fixed = TRUE,
                 label = label)
  }
  expect_named(evaluate(model, d$x, d$y, batch_size = 8, steps = 2, verbose = 0),
               c("loss", "mae"))
  expect_identical(dim(predict(model, d$x, batch_size = 10, steps = 2, verbose = 0)),
                   c(20L, 1L))
})
