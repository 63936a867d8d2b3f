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
