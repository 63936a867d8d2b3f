# An interrupted and resumed fit() ends bit-identical to an uninterrupted one
# for the functional API and for classes defined in R.

# Stops with an R error before batch `batch_at` of epoch `epoch_at`.
stop_at <- function(epoch_at, batch_at) {
  Callback("StopAt",
    on_epoch_begin = function(epoch, logs = NULL) self$epoch <- epoch,
    on_train_batch_begin = function(batch, logs = NULL) {
      if (self$epoch == epoch_at && batch == batch_at) stop("Interrupting!")
    })()
}

# Trains a fresh model from `make_model()` on `data`; `extra` callbacks
# come after the backup callback.
train_backed_up <- function(make_model, data, dir, extra = list(), epochs = 3) {
  model <- make_model()
  history <- model %>% fit(
    data$x, data$y, epochs = epochs, batch_size = 5, validation_split = 0.2,
    verbose = 0,
    callbacks = c(list(callback_backup_and_restore(dir, save_freq = 2L)), extra)
  )
  list(model = model, history = history)
}

all_variables <- function(model) lapply(model$variables, function(v) v$numpy())

# Runs uninterrupted, then interrupted and resumed; both must end identical.
# 32 training samples in batches of 5 make 7 steps an epoch; saving every 2
# steps, the last checkpoint before the stop (at epoch 2, batch 4) is step 10:
# epoch 2 after its 3rd batch, so the resumed run starts mid-epoch.
expect_exact_resume <- function(make_model, data) {
  reference <- train_backed_up(make_model, data, withr::local_tempdir())
  dir <- file.path(withr::local_tempdir(), "backup")
  expect_error(train_backed_up(make_model, data, dir, list(stop_at(2, 4))),
               "Interrupting!")
  info <- backup_info(dir)
  expect_identical(info$epoch, 2L)
  expect_identical(info$batch, 3L)
  resumed <- train_backed_up(make_model, data, dir)
  expect_identical(get_weights(resumed$model), get_weights(reference$model))
  expect_identical(all_variables(resumed$model), all_variables(reference$model))
  expect_identical(optimizer_state(resumed$model), optimizer_state(reference$model))
  expect_identical(resumed$history$metrics, reference$history$metrics)
  expect_false(dir.exists(dir))
  invisible(reference)
}

regression_data <- function(n = 40, seed = 11) {
  set.seed(seed)
  x <- matrix(rnorm(n * 4), n, 4)
  list(x = x, y = matrix(x %*% c(1, -1, 0.5, 2) + rnorm(n, sd = 0.1), n, 1))
}

test_that("a functional model with two inputs and two outputs resumes exactly", {
  skip_if_no_python()
  make_model <- function() {
    set_random_seed(1)
    a <- keras_input(shape = 3, name = "a")
    b <- keras_input(shape = 2, name = "b")
    hidden <- layer_concatenate(list(a, b)) %>%
      layer_dense(8, activation = "relu") %>%
      layer_dropout(0.3)
    model <- keras_model(
      list(a = a, b = b),
      list(total = layer_dense(hidden, 1, name = "total"),
           parts = layer_dense(hidden, 2, name = "parts"))
    )
    model %>% compile(optimizer = optimizer_adam(0.01),
                      loss = list(total = "mse", parts = "mae"),
                      metrics = list(total = "mae"))
    model
  }
  set.seed(5)
  n <- 40
  x <- list(b = matrix(rnorm(2 * n), n), a = matrix(rnorm(3 * n), n))
  y <- list(parts = cbind(rowSums(x$a), rowSums(x$b)),
            total = matrix(rowSums(x$a) + rowSums(x$b), n))
  reference <- expect_exact_resume(make_model, list(x = x, y = y))
  expect_setequal(names(reference$history$metrics),
                  c("loss", "total_loss", "parts_loss", "total_mae",
                    "val_loss", "val_total_loss", "val_parts_loss", "val_total_mae"))
})

test_that("a custom R layer with weights and its own seed generator resumes exactly", {
  skip_if_no_python()
  layer_noisy_dense <- Layer("NoisyDense",
    initialize = function(units, rate = 0.3, seed = 7, ...) {
      super$initialize(...)
      self$units <- as.integer(units)
      self$rate <- rate
      self$seed_generator <- random_seed_generator(seed)
    },
    build = function(input_shape) {
      self$kernel <- self$add_weight(shape = shape(input_shape[[2]], self$units),
                                     initializer = "glorot_uniform")
      self$bias <- self$add_weight(shape = shape(self$units), initializer = "zeros")
    },
    call = function(inputs, training = NULL) {
      out <- op_add(op_matmul(inputs, self$kernel), self$bias)
      if (isTRUE(training)) {
        out <- random_dropout(out, self$rate, seed = self$seed_generator)
      }
      out
    }
  )
  make_model <- function() {
    set_random_seed(1)
    model <- keras_model_sequential(input_shape = 4) %>%
      layer_noisy_dense(units = 8) %>%
      layer_dense(1)
    model %>% compile(optimizer = optimizer_adam(0.01), loss = "mse")
    model
  }
  seed_state <- function(model) model$layers[[1]]$seed_generator$state$numpy()
  fresh <- make_model()
  reference <- expect_exact_resume(make_model, regression_data())
  # The layer's generator did advance: its state is part of what resumed.
  expect_false(identical(seed_state(reference$model), seed_state(fresh)))
})

test_that("an R Model() with a custom train_step() resumes exactly", {
  skip_if_no_python()
  tf <- reticulate::import("tensorflow")
  `%as%` <- reticulate::`%as%`
  StepModel <- Model("StepModel",
    train_step = function(data) {
      c(x, y = NULL, sample_weight = NULL) %<-% data
      with(tf$GradientTape() %as% tape, {
        y_pred <- self(x, training = TRUE)
        loss <- self$compute_loss(y = y, y_pred = y_pred)
      })
      grads <- tape$gradient(loss, self$trainable_variables)
      # A clipped update, so that this step is not the built-in one.
      grads <- lapply(grads, function(g) tf$clip_by_value(g, -0.5, 0.5))
      self$optimizer$apply(grads, self$trainable_variables)
      for (metric in self$metrics) {
        if (metric$name == "loss") metric$update_state(loss)
        else metric$update_state(y, y_pred)
      }
      results <- lapply(self$metrics, function(m) m$result())
      names(results) <- vapply(self$metrics, function(m) m$name, "")
      results
    }
  )
  make_model <- function() {
    set_random_seed(1)
    input <- keras_input(shape = 4)
    output <- input %>% layer_dense(8) %>% layer_dropout(0.2) %>% layer_dense(1)
    model <- StepModel(input, output)
    model %>% compile(optimizer = optimizer_adam(0.01), loss = "mse",
                      metrics = "mae")
    model
  }
  reference <- expect_exact_resume(make_model, regression_data())
  expect_setequal(names(reference$history$metrics),
                  c("loss", "mae", "val_loss", "val_mae"))
})

test_that("an R Metric() resumes exactly, its accumulators included", {
  skip_if_no_python()
  metric_sum_abs <- Metric("SumAbsError",
    initialize = function(name = "sum_abs", ...) {
      super$initialize(name = name, ...)
      self$total <- self$add_variable(shape = shape(), initializer = "zeros",
                                      name = "total")
      self$count <- self$add_variable(shape = shape(), initializer = "zeros",
                                      name = "count")
    },
    update_state = function(y_true, y_pred, sample_weight = NULL) {
      err <- op_abs(op_subtract(op_cast(y_true, "float32"), y_pred))
      self$total$assign_add(op_sum(err))
      self$count$assign_add(op_cast(op_shape(y_pred)[[1]], "float32"))
    },
    result = function() op_divide(self$total, self$count),
    reset_state = function() {
      self$total$assign(0)
      self$count$assign(0)
    }
  )
  make_model <- function() {
    set_random_seed(1)
    model <- keras_model_sequential(input_shape = 4) %>%
      layer_dense(8) %>% layer_dropout(0.2) %>% layer_dense(1)
    model %>% compile(optimizer = optimizer_adam(0.01), loss = "mse",
                      metrics = list(metric_sum_abs()))
    model
  }
  reference <- expect_exact_resume(make_model, regression_data())
  # Resumed mid-epoch: epoch 2's value needs the restored accumulators.
  expect_identical(names(reference$history$metrics),
                   c("loss", "sum_abs", "val_loss", "val_sum_abs"))
})

test_that("an R Model() GAN whose optimizers are attributes resumes exactly", {
  skip_if_no_python()
  tf <- reticulate::import("tensorflow")
  `%as%` <- reticulate::`%as%`
  # keras3's GAN guide in miniature: no call(), two parts trained in turn by
  # two optimizers that compile() keeps as attributes.
  GAN <- Model("GAN",
    initialize = function(discriminator, generator, ...) {
      super$initialize(...)
      self$discriminator <- discriminator
      self$generator <- generator
      self$seed_generator <- random_seed_generator(3)
      self$d_loss_tracker <- metric_mean(name = "d_loss")
      self$g_loss_tracker <- metric_mean(name = "g_loss")
    },
    compile = function(d_optimizer, g_optimizer, loss_fn, ...) {
      super$compile(...)
      self$d_optimizer <- d_optimizer
      self$g_optimizer <- g_optimizer
      self$loss_fn <- loss_fn
    },
    metrics = active_property(function() {
      list(self$d_loss_tracker, self$g_loss_tracker)
    }),
    train_step = function(real) {
      batch_size <- shape(real)[[1]]
      z <- random_normal(shape(batch_size, 2), seed = self$seed_generator)
      images <- op_concatenate(list(self$generator(z), real))
      labels <- op_concatenate(list(op_ones(c(batch_size, 1)),
                                    op_zeros(c(batch_size, 1))))
      with(tf$GradientTape() %as% tape, {
        d_loss <- self$loss_fn(labels, self$discriminator(images))
      })
      weights <- self$discriminator$trainable_weights
      self$d_optimizer$apply_gradients(
        zip_lists(tape$gradient(d_loss, weights), weights))
      z <- random_normal(shape(batch_size, 2), seed = self$seed_generator)
      with(tf$GradientTape() %as% tape, {
        g_loss <- self$loss_fn(op_zeros(c(batch_size, 1)),
                               self$discriminator(self$generator(z)))
      })
      weights <- self$generator$trainable_weights
      self$g_optimizer$apply_gradients(
        zip_lists(tape$gradient(g_loss, weights), weights))
      self$d_loss_tracker$update_state(d_loss)
      self$g_loss_tracker$update_state(g_loss)
      list(d_loss = self$d_loss_tracker$result(),
           g_loss = self$g_loss_tracker$result())
    }
  )
  make_gan <- function() {
    set_random_seed(1)
    discriminator <- keras_model_sequential(input_shape = 4) %>%
      layer_dense(6, activation = "relu") %>% layer_dense(1)
    generator <- keras_model_sequential(input_shape = 2) %>% layer_dense(4)
    gan <- GAN(discriminator, generator)
    gan %>% compile(d_optimizer = optimizer_adam(0.01),
                    g_optimizer = optimizer_sgd(0.05, momentum = 0.9),
                    loss_fn = loss_binary_crossentropy(from_logits = TRUE))
    gan
  }
  train <- function(dir, extra = list()) {
    gan <- make_gan()
    history <- gan %>% fit(x, epochs = 3, batch_size = 5, verbose = 0,
      callbacks = c(list(callback_backup_and_restore(dir, save_freq = 2L)), extra))
    list(gan = gan, history = history)
  }
  state <- function(gan) {
    list(all_variables(gan),
         lapply(gan$d_optimizer$variables, function(v) v$numpy()),
         lapply(gan$g_optimizer$variables, function(v) v$numpy()))
  }
  set.seed(3)
  x <- matrix(rnorm(30 * 4), 30, 4)  # 6 batches an epoch
  if (beside_keras3()) {
    # The GAN has no call(): only kerasbackup's own fit() can build it.
    expect_unbuilt_refused(train(withr::local_tempdir()))
  } else {
    reference <- train(withr::local_tempdir())
    dir <- file.path(withr::local_tempdir(), "backup")
    expect_error(train(dir, list(stop_at(1, 5))), "Interrupting!")
    expect_identical(backup_info(dir)$batch, 4L)  # mid-epoch
    resumed <- train(dir)
    expect_identical(state(resumed$gan), state(reference$gan))
    expect_identical(resumed$history$metrics, reference$history$metrics)
    expect_identical(as.integer(resumed$gan$g_optimizer$iterations$numpy()), 18L)
  }
})

test_that("an R Model() whose parts are still unbuilt is refused before training", {
  skip_if_no_python()
  TwoParts <- Model("TwoParts",
    initialize = function(...) {
      super$initialize(...)
      self$encoder <- layer_dense(units = 3)
      self$head <- layer_dense(units = 1)
    },
    train_step = function(data) {
      list(loss = op_mean(self$head(self$encoder(data))))
    }
  )
  model <- TwoParts()
  model %>% compile(optimizer = "adam")
  dir <- file.path(withr::local_tempdir(), "backup")
  expect_error(
    model %>% fit(matrix(1, 4, 2), epochs = 1, verbose = 0,
                  callbacks = list(callback_backup_and_restore(dir))),
    class = "kerasbackup_unbuilt_state")
  err <- tryCatch(
    model %>% fit(matrix(1, 4, 2), epochs = 1, verbose = 0,
                  callbacks = list(callback_backup_and_restore(dir))),
    error = identity)
  if (beside_keras3()) {
    expect_unbuilt_refused(stop(err))
  } else {
    # kerasbackup's own fit() tried to build it from the first batch.
    expect_match(conditionMessage(err), "not built yet (dense", fixed = TRUE)
    expect_match(conditionMessage(err), "input shape", fixed = TRUE)
  }
})

test_that("an R Model() whose layers build at their first call resumes exactly", {
  skip_if_no_python()
  Lazy <- Model("Lazy",
    initialize = function(...) {
      super$initialize(...)
      self$hidden <- layer_dense(units = 8, activation = "relu")
      self$drop <- layer_dropout(rate = 0.2)
      self$out <- layer_dense(units = 1)
    },
    call = function(x, training = NULL) {
      self$out(self$drop(self$hidden(x), training = training))
    }
  )
  make_model <- function() {
    set_random_seed(1)
    model <- Lazy()
    model %>% compile(optimizer = optimizer_adam(0.01), loss = "mse")
    model
  }
  expect_false(make_model()$built)  # fit() builds it from the first batch
  if (beside_keras3()) {
    expect_unbuilt_refused(train_backed_up(make_model, regression_data(),
                                           withr::local_tempdir()))
  } else {
    expect_exact_resume(make_model, regression_data())
  }
})
