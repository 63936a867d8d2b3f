# fit() inside a tf.distribute strategy scope made from R (MirroredStrategy
# over 2 logical CPUs): an R stop() mid-epoch and a resume end bit-identical
# to an uninterrupted fit(). One Rscript: TensorFlow's devices are fixed
# when it starts.

test_that("fit() in a strategy scope made from R resumes bit-identically", {
  skip_if_no_python()
  res <- run_script("strategy.R", env = c(KERAS_BACKEND = "tensorflow",
                                           TF_CPP_MIN_LOG_LEVEL = "3"))
  expect_identical(res$replicas, 2L)
  expect_true(res$stopped)
  expect_equal(res$checkpoint, c(epoch = 3, batch = 2, verified = 1))
  for (part in c("weights", "optimizer", "history", "cleaned_up")) {
    expect_true(res[[part]], label = part)
  }
  expect_identical(res$rows[["resumed"]], res$rows[["reference"]])
  expect_gt(res$rows[["reference"]], 0)
})
