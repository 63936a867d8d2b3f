# Runs keras3's own testthat suite against the installed keras3, in one of
# three variants, and saves the per-file counts for check.R:
#
#   plain     keras3 alone (testthat::test_dir(load_package = "installed"),
#             as test_check() does under R CMD check)
#   attached  the same on a copy of the tests with helper-zzz-kerasbackup.R
#             added, doing library(kerasbackup): testthat sources helpers in
#             sorted order, so it runs after keras3's helper-skips.R and
#             helper-utils.R and before setup.R and the tests; the tests run
#             with kerasbackup loaded and attached after keras3 (its S3
#             methods, hooks and load-time side effects are in play). The
#             tests' own name lookups still go through their clone of
#             keras3's namespace first, as testthat arranges.
#   shadow    as `attached`, and in the tests' environment every keras3
#             export that kerasbackup exports too is bound to kerasbackup's
#             object, as a user's code sees it with kerasbackup attached
#             after keras3.
#
#   Rscript k3suite.R VARIANT TESTS_DIR OUT.rds
args <- commandArgs(trailingOnly = TRUE)
variant <- args[[1]]; tests <- normalizePath(args[[2]]); out <- args[[3]]
stopifnot(variant %in% c("plain", "attached", "shadow"), dir.exists(tests))
suppressPackageStartupMessages(library(testthat))

dir <- tests
if (variant != "plain") {
  dir <- file.path(tempfile("k3tests-"), "testthat")
  dir.create(dir, recursive = TRUE)
  file.copy(list.files(tests, full.names = TRUE, all.files = TRUE, no.. = TRUE),
            dir, recursive = TRUE)
  writeLines(c(
    "# Added by kerasbackup's coexistence harness (tests/keras3/k3suite.R).",
    "options(kb_helper_after_keras3_helpers = exists(\"test_succeeds\", inherits = FALSE))",
    "suppressPackageStartupMessages(library(kerasbackup))",
    "options(kb_helper_ran = \"kerasbackup\" %in% loadedNamespaces())"),
    file.path(dir, "helper-zzz-kerasbackup.R"))
}
env <- NULL
if (variant == "shadow") {
  suppressPackageStartupMessages(library(keras3))
  env <- testthat::test_env("keras3")
  common <- intersect(getNamespaceExports("kerasbackup"),
                      getNamespaceExports("keras3"))
  for (n in common) assign(n, getExportedValue("kerasbackup", n), envir = env)
  message("# shadowed ", length(common), " keras3 names with kerasbackup's")
}

t0 <- proc.time()[["elapsed"]]
res <- test_dir(dir, package = "keras3", load_package = "installed",
                env = env, reporter = "silent",
                stop_on_failure = FALSE, stop_on_warning = FALSE)
elapsed <- proc.time()[["elapsed"]] - t0
df <- as.data.frame(res)

files <- sort(basename(list.files(tests, "^test.*\\.[rR]$")))
counts <- do.call(rbind, lapply(files, function(f) {
  d <- df[df$file == f, , drop = FALSE]
  data.frame(file = f, tests = nrow(d), expectations = sum(d$nb),
             passed = sum(d$passed), failed = sum(d$failed),
             skipped = sum(d$skipped), error = sum(d$error),
             warning = sum(d$warning), stringsAsFactors = FALSE)
}))
per_test <- data.frame(file = df$file, test = df$test, nb = df$nb,
                       passed = df$passed, failed = df$failed,
                       skipped = df$skipped, error = df$error,
                       warning = df$warning, stringsAsFactors = FALSE)
saveRDS(list(variant = variant, counts = counts, per_test = per_test,
             elapsed = elapsed,
             helper_ran = getOption("kb_helper_ran", FALSE),
             helper_after = getOption("kb_helper_after_keras3_helpers", NA),
             kerasbackup_loaded = "kerasbackup" %in% loadedNamespaces(),
             search = search()), out)
cat(sprintf("%s: %d files, %d tests, %.0f s\n", variant, length(files),
            nrow(df), elapsed))
