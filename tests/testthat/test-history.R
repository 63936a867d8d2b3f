skip_if_keras3_front_end()

test_that("as.data.frame() gives one row per epoch and metric, NA-padded", {
  h <- structure(
    list(params = list(verbose = 0L, epochs = 4L, steps = 2L),
         metrics = list(loss = c(3, 2, 1), mae = c(1.5, 1, 0.5),
                        val_loss = c(4, 3, 2), val_mae = c(2, 1.5, 1))),
    class = "keras_training_history"
  )
  df <- as.data.frame(h)
  expect_identical(nrow(df), 16L)
  expect_identical(names(df), c("epoch", "value", "metric", "data"))
  loss <- df[df$metric == "loss" & df$data == "training", ]
  expect_identical(loss$epoch, 1:4)
  expect_identical(loss$value, c(3, 2, 1, NA))
  expect_identical(levels(df$data), c("training", "validation"))
  expect_output(print(h), "(3 of 4 epochs)", fixed = TRUE)
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(h, method = "base"), h)
})

test_that("plot() of a history uses ggplot2 when installed, base graphics otherwise", {
  h <- structure(
    list(params = list(verbose = 0L, epochs = 12L, steps = 2L),
         metrics = list(loss = 12:1, mae = 12:1 / 2, val_loss = 13:2, val_mae = 13:2 / 2)),
    class = "keras_training_history"
  )
  pdf(NULL)
  on.exit(dev.off())
  p <- plot(h)
  expect_s3_class(p, "ggplot")
  expect_setequal(as.character(unique(p$data$metric)), c("loss", "mae"))
  print(p)
  p <- plot(h, metrics = "loss", method = "ggplot2")
  expect_identical(as.character(unique(p$data$metric)), "loss")
  expect_identical(plot(h, metrics = "mae", method = "base"), h)
  expect_true("kerasbackup_invalid_argument" %in%
                plain_message(plot(h, metrics = "acc"))$class)
  # Without ggplot2, "auto" falls back to base graphics.
  local_package_binding("has_ggplot2", function() FALSE)
  expect_identical(plot(h), h)
})
