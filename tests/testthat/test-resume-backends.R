# The resume of test-resume.R on the JAX and torch backends: one Rscript per
# backend (a session's backend is fixed once Keras is imported).

for (backend in c("jax", "torch")) {
  test_that(paste("an R stop() mid-epoch, resumed, ends bit-identical on", backend), {
    skip_if_no_python()
    out <- tempfile(fileext = ".rds")
    run <- callr::rscript(
      test_path("scripts", "resume-backend.R"),
      cmdargs = c(backend, normalizePath(test_path("helper-kerasbackup.R")), out),
      stderr = "2>&1", fail_on_status = FALSE, show = FALSE, timeout = 900
    )
    expect_identical(run$status, 0L, info = run$stdout)
    res <- readRDS(out)
    expect_identical(res$backend, backend)
    expect_true(res$stopped)
    expect_equal(res$checkpoint, c(epoch = 3, batch = 2, verified = 1))
    for (part in c("weights", "optimizer", "history", "callbacks", "cleaned_up")) {
      expect_true(res[[part]], label = part)
    }
    expect_identical(res$rows[["resumed"]], res$rows[["reference"]])
    expect_gt(res$rows[["reference"]], 0)
  })
}
