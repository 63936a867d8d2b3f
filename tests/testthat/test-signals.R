# The preemption signals are listed once (inst/python/kerasbackup/signals.txt);
# R and Python read the same list.

test_that("R and Python agree on the accepted and default preemption signals", {
  skip_if_no_python()
  r <- kerasbackup:::preemption_signal_list()
  preemption <- reticulate::import_from_path(
    "kerasbackup.preemption", path = system.file("python", package = "kerasbackup"))
  expect_identical(r$accepted, unlist(preemption$ACCEPTED_SIGNALS))
  expect_identical(r$default, unlist(preemption$DEFAULT_SIGNALS))
  expect_identical(r$default, c("SIGTERM", "SIGUSR1"))
  # The callback's default is that list.
  cb <- callback_backup_and_restore(withr::local_tempdir())
  expect_identical(unlist(cb$preemption_signals), r$default)
  # Python accepts exactly the names R accepts.
  for (name in c(r$accepted, "SIGKILL", "SIGSTOP", "SIGSEGV")) {
    ok <- tryCatch({
      preemption$signal_numbers(list(name))
      TRUE
    }, error = function(e) FALSE)
    expect_identical(ok, name %in% r$accepted, label = name)
  }
})

test_that("the help page names each accepted signal", {
  rd <- tools::Rd_db("kerasbackup")[["callback_backup_and_restore.Rd"]]
  text <- paste(capture.output(tools::Rd2txt(rd, options = list(underline_titles = FALSE))),
                collapse = " ")
  for (name in kerasbackup:::preemption_signal_list()$accepted) {
    expect_match(text, name, fixed = TRUE)
  }
})
