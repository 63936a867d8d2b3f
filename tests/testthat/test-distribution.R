# distribution_initialize(): argument checks, and one process joining a JAX
# job from R, then fit() data-parallel over 2 host devices (its own Rscript:
# the backend and the devices are fixed when JAX starts). The multi-process
# behaviour is tested in tests/python/test_distributed_jax.py.

test_that("distribution_initialize() checks its arguments in R", {
  bad <- list(
    list(list("nohost", 2, 0), "coordinator"),
    list(list("h:1", 0, 0), "num_processes"),
    list(list("h:1", 2, 2), "process_id"),
    list(list("h:1", 2, -1), "process_id"),
    list(list("h:1", 2, 0, timeout = -1), "timeout"),
    list(list("h:1", 2, 0, init_timeout = 0), "init_timeout"),
    list(list("h:1", 2, 0, data_parallel = NA), "data_parallel")
  )
  for (case in bad) {
    err <- tryCatch(do.call(distribution_initialize, case[[1]]), error = function(e) e)
    expect_s3_class(err, "kerasbackup_invalid_argument")
    expect_identical(err$arg, case[[2]])
  }
})

test_that("one process joins a JAX job from R and fit() trains data-parallel", {
  skip_if_no_python()
  res <- run_script("distribution-jax.R", env = c(
    JAX_PLATFORMS = "cpu", XLA_FLAGS = "--xla_force_host_platform_device_count=2"))
  expect_match(res$distribution, "DataParallel$")
  expect_identical(res$devices, 2L)
  expect_gt(res$rows, 0)
  # jax.distributed starts once per process.
  expect_true("python.builtin.RuntimeError" %in% res$again)
  expect_true(res$cleaned_up)
})
