skip_if_keras3_front_end()

# fit()'s arguments are checked in R (issue 10, defect 3): a classed error
# names the argument, the value and what is accepted; no value reaches
# Python as NA or as a number Python cannot hold.

fit_method <- function(...) {
  # The S3 method itself: its checks come before the model is used, so these
  # tests need no Python.
  kerasbackup:::fit.keras.src.models.model.Model(NULL, ...)
}

bad_fit_args <- list(
  list(args = list(epochs = 1e10), accepted = "a whole number from 0 to 2147483647"),
  list(args = list(epochs = -1), accepted = "a whole number from 0 to"),
  list(args = list(epochs = NA), accepted = "a whole number from 0 to"),
  list(args = list(batch_size = 1e10), accepted = "`NULL` or a whole number from 1 to"),
  list(args = list(batch_size = 0), accepted = "`NULL` or a whole number from 1 to"),
  list(args = list(steps_per_epoch = -1), accepted = "`NULL` or a whole number from 1"),
  list(args = list(steps_per_epoch = 0), accepted = "`NULL` or a whole number from 1"),
  list(args = list(steps_per_epoch = NA), accepted = "`NULL` or a whole number from 1"),
  list(args = list(steps_per_epoch = "x"), accepted = "`NULL` or a whole number from 1"),
  list(args = list(validation_freq = 0), accepted = "a whole number >= 1"),
  list(args = list(validation_freq = 1.5), accepted = "a whole number >= 1"),
  list(args = list(initial_epoch = 1e10), accepted = "a whole number from 1 to `epochs`"),
  list(args = list(epochs = 3, initial_epoch = 5),
       accepted = "a whole number from 1 to `epochs` (3)"),
  list(args = list(initial_epoch = 0), accepted = "a whole number from 1 to `epochs`"),
  list(args = list(validation_batch_size = -1), accepted = "`NULL` or a whole number from 1"),
  list(args = list(class_weight = list(a = 1)), accepted = "mapping class indices"),
  list(args = list(class_weight = list("0" = -1)), accepted = "weights >= 0"),
  list(args = list(class_weight = "heavy"), accepted = "mapping class indices"),
  list(args = list(shuffle = "no"), accepted = "`TRUE` or `FALSE`"),
  list(args = list(shuffle = NA), accepted = "`TRUE` or `FALSE`"),
  list(args = list(validation_split = 1), accepted = "a number in [0, 1)"),
  list(args = list(validation_split = -0.1), accepted = "a number in [0, 1)"),
  list(args = list(verbose = 3), accepted = '"auto", 0, 1, 2, `TRUE` or `FALSE`'),
  list(args = list(verbose = NA), accepted = '"auto", 0, 1, 2, `TRUE` or `FALSE`')
)

test_that("bad numeric fit() arguments stop with a classed error naming argument and value", {
  for (case in bad_fit_args) {
    name <- names(case$args)[[length(case$args)]]
    err <- plain_message(do.call(fit_method, case$args))
    label <- paste(name, "=", deparse(case$args[[name]]))
    expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
    expect_s3_class(err$cnd, "kerasbackup_error")
    expect_identical(err$cnd$arg, name, label = label)
    expect_identical(err$cnd$value, case$args[[name]], label = label)
    expect_match(err$message, paste0("`", name, "` must be "), fixed = TRUE,
                 label = label)
    expect_match(err$message, case$accepted, fixed = TRUE, label = label)
    expect_match(err$message,
                 paste0("Received: `", kerasbackup:::describe_value(case$args[[name]]), "`"),
                 fixed = TRUE, label = label)
  }
})

test_that("the largest values R and Python both hold as integers pass the checks", {
  # They get as far as the model (NULL here), so the checks let them through.
  big <- .Machine$integer.max
  for (args in list(list(epochs = big), list(batch_size = big),
                    list(steps_per_epoch = big), list(epochs = 5, initial_epoch = 5),
                    list(validation_freq = c(1, 3)), list(class_weight = c(1, 2.5)),
                    list(class_weight = list("3" = 1, "0" = 2)))) {
    err <- tryCatch(do.call(fit_method, args), error = function(e) e)
    expect_false(inherits(err, "kerasbackup_invalid_argument"),
                 label = paste(deparse(args), collapse = ""))
  }
})

test_that("a bad fit() argument leaves an existing checkpoint alone", {
  skip_if_no_python()
  data <- toy_data()
  dir <- file.path(withr::local_tempdir(), "backup")
  toy_model() %>% fit(data$x, data$y, epochs = 2, verbose = 0,
                      callbacks = list(callback_backup_and_restore(
                        dir, delete_checkpoint = FALSE)))
  before <- backup_info(dir)
  expect_error(
    toy_model() %>% fit(data$x, data$y, epochs = 1e10, verbose = 0,
                        callbacks = list(callback_backup_and_restore(dir))),
    class = "kerasbackup_invalid_argument"
  )
  expect_identical(backup_info(dir), before)
})

test_that("validation_steps is checked like steps_per_epoch", {
  for (value in list(2.5, NA, -1, 0, "a", 1e12)) {
    err <- plain_message(fit_method(validation_steps = value))
    label <- paste("validation_steps =", deparse(value))
    expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
    expect_identical(err$cnd$arg, "validation_steps", label = label)
    expect_identical(err$cnd$value, value, label = label)
    expect_match(err$message, "`NULL` or a whole number from 1 to", fixed = TRUE,
                 label = label)
  }
  # a count gets past the check (to the NULL model)
  err <- tryCatch(fit_method(validation_steps = 2), error = function(e) e)
  expect_false(inherits(err, "kerasbackup_invalid_argument"))
})

test_that("fit() takes keras3's view_metrics, which has no effect here", {
  fmls <- formals(kerasbackup:::fit.keras.src.models.model.Model)
  expect_identical(fmls$view_metrics, quote(getOption("keras.view_metrics", "auto")))
  for (value in list("yes", NA, 1, c(TRUE, FALSE))) {
    err <- plain_message(fit_method(view_metrics = value))
    expect_s3_class(err$cnd, "kerasbackup_invalid_argument")
    expect_identical(err$cnd$arg, "view_metrics")
    expect_match(err$message, '"auto", `TRUE` or `FALSE`', fixed = TRUE)
  }
  skip_if_no_python()
  data <- toy_data()
  model <- toy_model()
  for (value in list(FALSE, TRUE, "auto")) {
    h <- model %>% fit(data$x, data$y, epochs = 1, verbose = 0,
                       view_metrics = value)
    expect_length(h$metrics$loss, 1L)
  }
})
