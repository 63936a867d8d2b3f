test_that("the reference example runs unchanged and prints what the page prints", {
  skip_if_no_python()
  example <- system.file("examples", "backup_and_restore.R",
                         package = "kerasbackup", mustWork = TRUE)
  env <- new.env()
  messages <- character()
  output <- withCallingHandlers(
    capture.output(source(example, local = env, print.eval = TRUE)),
    message = function(m) {
      messages <<- c(messages, conditionMessage(m))
      invokeRestart("muffleMessage")
    }
  )
  expect_identical(messages, "Interrupted!\n")
  expect_identical(output, c("[1] 0 1 2", "[1] 10"))
  # delete_checkpoint = TRUE: nothing is left behind.
  expect_false(dir.exists(env$backup_dir))
})
