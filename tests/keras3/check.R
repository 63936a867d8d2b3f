# kerasbackup beside the real keras3: the coexistence checks.
#
#   R_LIBS=KB_LIB:KERAS3_LIB Rscript tests/keras3/check.R [options]
#
#   --out DIR           where outputs, messages and diffs go (default: a
#                       temporary directory)
#   --keras3-tests DIR  keras3's tests/testthat (default: $KERAS3_TESTS)
#   --parts LIST        comma-separated subset of script,probe,example,suite
#                       (default: all)
#   --suite-variants L  comma-separated subset of attached,shadow (plain
#                       always runs; default: both)
#
# The libraries on R_LIBS give keras3 and kerasbackup (kerasbackup from the
# first); every run is a separate Rscript process with the same environment
# (RETICULATE_PYTHON defaults to ~/.virtualenvs/r-keras/bin/python,
# KERAS_BACKEND=tensorflow, TF_CPP_MIN_LOG_LEVEL=2 unless set). Prints one
# PASS/FAIL line per check and exits with status 1 on any failure.
#
# Checks:
#   script-<mode>   script.R's stdout with kerasbackup loaded `after`,
#                   `before` keras3 or as a namespace only (`ns`) is
#                   byte-identical to keras3 alone (`none`); a unified diff
#                   on failure
#   masking-<order> attaching kerasbackup after keras3 (and keras3 after
#                   kerasbackup) masks no keras3 function but
#                   callback_backup_and_restore: the masking message and
#                   identical() on both package environments
#   s3-overwrite-<mode>  no "Registered S3 method(s) overwritten" message
#   s3-resolve-<mode>    every S3 method keras3 or kerasbackup registers on
#                   a non-kerasbackup class (fit, compile, predict, summary,
#                   print, plot, format for keras.src.models.model.Model,
#                   the history methods, `$<-` for callbacks, tensor
#                   methods) and reticulate's py_to_r_wrapper / r_to_py
#                   hooks resolve to the same package's function as with
#                   keras3 alone, from keras3's namespace and from the
#                   global environment; the generics a user's calls reach
#                   are the same too
#   example-<variant>    inst/examples/backup_and_restore.R with keras3
#                   installed prints the help page's output on stdout and
#                   no Python warning on stderr
#   suite-<variant>  keras3's own tests give the same per-file counts with
#                   kerasbackup attached as without it
options(warn = 1, width = 100)
argv <- commandArgs(trailingOnly = TRUE)
opt <- function(name, default) {
  i <- match(name, argv)
  if (is.na(i)) default else argv[[i + 1]]
}
self <- normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[[1]]))
here <- dirname(self)
repo <- normalizePath(file.path(here, "..", ".."))
out <- opt("--out", tempfile("kb-coexist-"))
dir.create(out, recursive = TRUE, showWarnings = FALSE)
out <- normalizePath(out)
parts <- strsplit(opt("--parts", "script,probe,example,suite"), ",")[[1]]
suite_variants <- strsplit(opt("--suite-variants", "attached,shadow"), ",")[[1]]
keras3_tests <- opt("--keras3-tests", Sys.getenv("KERAS3_TESTS"))

venv_py <- path.expand("~/.virtualenvs/r-keras/bin/python")
if (!nzchar(Sys.getenv("RETICULATE_PYTHON")) && file.exists(venv_py))
  Sys.setenv(RETICULATE_PYTHON = venv_py)
Sys.setenv(KERAS_BACKEND = "tensorflow")
if (!nzchar(Sys.getenv("TF_CPP_MIN_LOG_LEVEL"))) Sys.setenv(TF_CPP_MIN_LOG_LEVEL = "2")
if (!nzchar(Sys.getenv("NOT_CRAN"))) Sys.setenv(NOT_CRAN = "true")
rscript <- file.path(R.home("bin"), "Rscript")

results <- character()
record <- function(name, ok, detail = character()) {
  line <- sprintf("%s %s", if (isTRUE(ok)) "PASS" else "FAIL", name)
  results[[name]] <<- if (isTRUE(ok)) "PASS" else "FAIL"
  cat(line, "\n", sep = "")
  if (length(detail)) cat(paste0("    ", detail), sep = "\n")
  flush(stdout())
}
info <- function(...) { cat("INFO ", ..., "\n", sep = ""); flush(stdout()) }
timed <- function(label, expr) {
  t0 <- proc.time()[["elapsed"]]
  force(expr)
  info(sprintf("%s took %.0f s", label, proc.time()[["elapsed"]] - t0))
  invisible()
}
run_r <- function(args, stdout, stderr) {
  system2(rscript, shQuote(args), stdout = stdout, stderr = stderr)
}
read_text <- function(path) {
  if (!file.exists(path)) return(character())
  readLines(path, warn = FALSE, encoding = "UTF-8")
}
udiff <- function(a, b, max_lines = 200L) {
  d <- suppressWarnings(system2("diff", c("-u", shQuote(a), shQuote(b)),
                                stdout = TRUE, stderr = TRUE))
  if (length(d) > max_lines)
    d <- c(d[seq_len(max_lines)],
           sprintf("... (%d more diff lines; full diff in %s.diff)",
                   length(d) - max_lines, b))
  d
}

# ---------------------------------------------------------------------------
where <- function(p) {
  path <- tryCatch(find.package(p), error = function(e) NA_character_)
  if (is.na(path)) return(NA_character_)
  sprintf("%s %s from %s", p, read.dcf(file.path(path, "DESCRIPTION"), "Version")[1], path)
}
info("R_LIBS=", Sys.getenv("R_LIBS"))
info("RETICULATE_PYTHON=", Sys.getenv("RETICULATE_PYTHON"),
     " KERAS_BACKEND=", Sys.getenv("KERAS_BACKEND"),
     " TF_CPP_MIN_LOG_LEVEL=", Sys.getenv("TF_CPP_MIN_LOG_LEVEL"))
`%|%` <- function(a, b) if (is.na(a)) b else a
for (p in c("keras3", "kerasbackup", "reticulate")) info(where(p) %|% paste(p, "not found"))
have <- !is.na(vapply(c("keras3", "kerasbackup"), where, ""))
if (!all(have)) {
  record("libraries", FALSE, paste("not installed:", paste(names(have)[!have], collapse = ", ")))
  quit(status = 1)
}
info("outputs in ", out)

modes <- c("none", "after", "before", "ns")

# ---------------------------------------------------------------------------
if ("script" %in% parts) timed("script.R in 4 orders", {
  for (m in modes) {
    st <- run_r(c(file.path(here, "script.R"), m, file.path(out, paste0("script-", m, ".msg"))),
                file.path(out, paste0("script-", m, ".out")),
                file.path(out, paste0("script-", m, ".err")))
    if (st != 0)
      info(sprintf("script.R %s exited with status %s (stderr: %s)", m, st,
                   file.path(out, paste0("script-", m, ".err"))))
    assign(paste0("status_", m), st)
  }
  none_out <- file.path(out, "script-none.out")
  record("script-none-runs", get("status_none") == 0 && file.size(none_out) > 0,
         if (get("status_none") != 0) tail(read_text(file.path(out, "script-none.err")), 15))
  for (m in setdiff(modes, "none")) {
    f <- file.path(out, paste0("script-", m, ".out"))
    same <- file.exists(f) &&
      identical(readBin(none_out, "raw", file.size(none_out)), readBin(f, "raw", file.size(f)))
    detail <- character()
    if (!same) {
      full <- suppressWarnings(system2("diff", c("-u", shQuote(none_out), shQuote(f)),
                                       stdout = TRUE, stderr = TRUE))
      writeLines(full, paste0(f, ".diff"))
      detail <- udiff(none_out, f)
    }
    if (get(paste0("status_", m)) != 0)
      detail <- c(detail, sprintf("(exit status %s; last stderr lines:)", get(paste0("status_", m))),
                  tail(read_text(file.path(out, paste0("script-", m, ".err"))), 10))
    record(paste0("script-", m, "-stdout-identical-to-none"), same && get(paste0("status_", m)) == 0, detail)
  }

  # (b) No S3 method overwritten, in any order (library()'s messages and
  # whatever else reached stderr).
  for (m in modes) {
    txt <- c(read_text(file.path(out, paste0("script-", m, ".msg"))),
             read_text(file.path(out, paste0("script-", m, ".err"))))
    hit <- grep("Registered S3 methods? .*overwritten", txt)
    detail <- unlist(lapply(hit, function(i) {
      end <- i + 1
      while (end <= length(txt) && grepl("^  ", txt[[end]])) end <- end + 1
      c(txt[[i]], sprintf("  (%d methods, e.g. %s)", end - i - 2,
                          paste(trimws(head(txt[seq_len(end - i - 2) + i + 1], 3)), collapse = "; ")))
    }))
    record(paste0("s3-overwrite-", m), length(hit) == 0, detail)
  }

  # (a) The masking messages: kerasbackup after keras3 may mask only
  # callback_backup_and_restore, and so may keras3 after kerasbackup.
  masked_in_msg <- function(txt, from) {
    start <- grep(sprintf("masked from .package:%s.:", from), txt)
    if (!length(start)) return(character())
    body <- character()
    for (i in seq(start[[1]] + 1, length(txt))) {
      if (!nzchar(trimws(txt[[i]])) && length(body)) break
      if (nzchar(trimws(txt[[i]]))) body <- c(body, txt[[i]])
    }
    trimws(unlist(strsplit(paste(body, collapse = " "), ",\\s*")))
  }
  for (o in list(c("after", "keras3"), c("before", "kerasbackup"))) {
    txt <- read_text(file.path(out, paste0("script-", o[[1]], ".msg")))
    names_ <- masked_in_msg(txt, o[[2]])
    bad <- setdiff(names_, "callback_backup_and_restore")
    record(sprintf("masking-message-%s (library(%s) masks from package:%s only callback_backup_and_restore)",
                   o[[1]], if (o[[1]] == "after") "kerasbackup" else "keras3", o[[2]]),
           length(bad) == 0,
           if (length(bad)) c(sprintf("%d other names masked, e.g.:", length(bad)),
                              strwrap(paste(head(bad, 40), collapse = ", "), 90)))
  }
})

# ---------------------------------------------------------------------------
if ("probe" %in% parts) timed("probe.R in 4 orders", {
  probes <- list()
  for (m in modes) {
    f <- file.path(out, paste0("probe-", m, ".rds"))
    st <- run_r(c(file.path(here, "probe.R"), m, f),
                file.path(out, paste0("probe-", m, ".out")),
                file.path(out, paste0("probe-", m, ".err")))
    if (st != 0 || !file.exists(f)) {
      record(paste0("probe-", m, "-runs"), FALSE,
             tail(read_text(file.path(out, paste0("probe-", m, ".err"))), 10))
      next
    }
    probes[[m]] <- readRDS(f)
  }
  for (m in c("after", "before")) {
    p <- probes[[m]]
    if (is.null(p)) next
    bad <- setdiff(p$masked, "callback_backup_and_restore")
    record(sprintf("masking-identical-%s (keras3 exports that kerasbackup's differ from: only callback_backup_and_restore)", m),
           length(bad) == 0,
           if (length(bad)) c(sprintf("%d keras3 exports bound to a different object in package:kerasbackup, e.g.:", length(bad)),
                              strwrap(paste(head(bad, 40), collapse = ", "), 90)))
  }
  base <- probes[["none"]]
  if (!is.null(base)) for (m in setdiff(modes, "none")) {
    p <- probes[[m]]
    if (is.null(p)) next
    a <- base$s3; b <- p$s3
    stopifnot(identical(a[, 1:2], b[, 1:2]))
    d <- which(a$from_keras3 != b$from_keras3 | a$from_user != b$from_user)
    rows <- sprintf("%s.%s: keras3 alone -> %s / %s, %s -> %s / %s",
                    a$generic[d], a$class[d], a$from_keras3[d], a$from_user[d],
                    m, b$from_keras3[d], b$from_user[d])
    g <- names(base$generics)
    dg <- g[base$generics[g] != p$generics[g]]
    grows <- sprintf("generic %s: keras3 alone -> %s, %s -> %s", dg,
                     base$generics[dg], m, p$generics[dg])
    detail <- c(if (length(d)) c(sprintf("%d of %d methods resolve elsewhere (from keras3's namespace / from the global env):", length(d), nrow(a)),
                                 head(rows, 40), if (length(rows) > 40) sprintf("... and %d more", length(rows) - 40)),
                if (length(dg)) c("generics reached from the global env:", grows))
    record(paste0("s3-resolve-", m), length(d) == 0 && length(dg) == 0, detail)
  }
  key <- c("fit", "compile", "predict", "summary", "print", "plot", "format")
  if (!is.null(base)) {
    s <- base$s3
    shown <- s[(s$generic %in% key & s$class == "keras.src.models.model.Model") |
                 s$class == "keras_training_history" |
                 (s$generic == "$<-" & s$class == "keras.src.callbacks.callback.Callback") |
                 (s$generic %in% c("py_to_r_wrapper", "r_to_py") &
                    s$class %in% c("keras.src.layers.layer.Layer", "keras.src.losses.loss.Loss",
                                   "python.builtin.type", "python.builtin.function",
                                   "python.builtin.method", "keras_shape")), ]
    for (m in names(probes)) {
      p <- probes[[m]]$s3
      sel <- match(paste(shown$generic, shown$class), paste(p$generic, p$class))
      info(sprintf("%-6s %s", m, paste(sprintf("%s.%s=%s", p$generic[sel], p$class[sel],
                                               p$from_keras3[sel]), collapse = " ")))
    }
  }
})

# ---------------------------------------------------------------------------
if ("example" %in% parts) timed("reference example", {
  example <- system.file("examples", "backup_and_restore.R", package = "kerasbackup")
  if (!nzchar(example)) example <- file.path(repo, "inst", "examples", "backup_and_restore.R")
  page <- file.path(repo, "..", "shared", "seed", "callback_backup_and_restore.txt")
  # The help page's output: "## " lines after the example's calls.
  # "Interrupted!" is a message() (stderr); the "[1] ..." lines are stdout.
  expected_out <- c("[1] 0 1 2", "[1] 10")
  expected_err <- "Interrupted!"
  if (file.exists(page)) {
    shown <- sub("^## ", "", grep("^## ", read_text(page), value = TRUE))
    expected_out <- grep("^\\[", shown, value = TRUE)
    expected_err <- grep("^\\[", shown, value = TRUE, invert = TRUE)
    info("expected output from ", normalizePath(page), ": ",
         paste(shown, collapse = " | "))
  }
  warn_re <- "Warning:|UserWarning|ResumeWarning|warnings\\.warn|DeprecationWarning|FutureWarning"
  variants <- list(
    `kerasbackup-only` = read_text(example),
    `keras3-then-kerasbackup` = c("library(keras3)", read_text(example)))
  for (v in names(variants)) {
    src <- file.path(out, paste0("example-", v, ".R"))
    writeLines(variants[[v]], src)
    fo <- file.path(out, paste0("example-", v, ".out"))
    fe <- file.path(out, paste0("example-", v, ".err"))
    wd <- setwd(tempdir()); st <- run_r(src, fo, fe); setwd(wd)
    so <- read_text(fo); se <- read_text(fe)
    warns <- grep(warn_re, se, value = TRUE)
    missing_err <- setdiff(expected_err, trimws(se))
    ok <- st == 0 && identical(so, expected_out) && !length(warns) && !length(missing_err)
    detail <- if (!ok) c(
      if (st != 0) sprintf("exit status %s", st),
      if (!identical(so, expected_out)) c("stdout:", paste0("  ", so), "expected:", paste0("  ", expected_out)),
      if (length(missing_err)) paste("stderr lacks:", paste(missing_err, collapse = ", ")),
      if (length(warns)) c("Python/R warnings on stderr:", paste0("  ", head(warns, 10))),
      if (st != 0) tail(se, 10))
    record(paste0("example-", v), ok, detail)
  }
})

# ---------------------------------------------------------------------------
if ("suite" %in% parts) {
  if (!nzchar(keras3_tests) || !dir.exists(keras3_tests)) {
    record("suite", FALSE, sprintf("keras3's tests not found (--keras3-tests / KERAS3_TESTS: '%s')", keras3_tests))
  } else timed("keras3's test suite", {
    info("keras3 tests: ", normalizePath(keras3_tests))
    runs <- list()
    for (v in c("plain", suite_variants)) {
      f <- file.path(out, paste0("suite-", v, ".rds"))
      t0 <- proc.time()[["elapsed"]]
      st <- run_r(c(file.path(here, "k3suite.R"), v, keras3_tests, f),
                  file.path(out, paste0("suite-", v, ".out")),
                  file.path(out, paste0("suite-", v, ".err")))
      info(sprintf("suite %s: exit status %s, %.0f s", v, st, proc.time()[["elapsed"]] - t0))
      if (st != 0 || !file.exists(f)) {
        record(paste0("suite-", v, "-runs"), FALSE,
               tail(read_text(file.path(out, paste0("suite-", v, ".err"))), 15))
        next
      }
      runs[[v]] <- readRDS(f)
    }
    show <- function(r) {
      c <- r$counts
      tot <- colSums(c[, -1])
      cat(sprintf("  %-34s %5s %5s %6s %6s %7s %5s %7s\n", "file", "tests", "nb",
                  "passed", "failed", "skipped", "error", "warning"))
      cat(sprintf("  %-34s %5d %5d %6d %6d %7d %5d %7d\n", c$file, c$tests, c$expectations,
                  c$passed, c$failed, c$skipped, c$error, c$warning), sep = "")
      cat(sprintf("  %-34s %5d %5d %6d %6d %7d %5d %7d\n", "TOTAL", tot[["tests"]],
                  tot[["expectations"]], tot[["passed"]], tot[["failed"]],
                  tot[["skipped"]], tot[["error"]], tot[["warning"]]))
    }
    for (v in names(runs)) {
      r <- runs[[v]]
      cat(sprintf("keras3 suite, %s (%.0f s; kerasbackup loaded: %s%s):\n", v, r$elapsed,
                  r$kerasbackup_loaded,
                  if (v != "plain") sprintf(", helper ran after keras3's helpers: %s", isTRUE(r$helper_after)) else ""))
      show(r)
    }
    if (!is.null(runs$plain)) {
      ok_plain <- !runs$plain$kerasbackup_loaded
      if (!ok_plain) record("suite-plain-without-kerasbackup", FALSE, "kerasbackup was loaded in the plain run")
      for (v in setdiff(names(runs), "plain")) {
        a <- runs$plain; b <- runs[[v]]
        ca <- a$counts[, -2]; cb <- b$counts[, -2] # not the test count: same files
        diffs <- which(apply(ca[, -1] != cb[, -1], 1, any) | a$counts$tests != b$counts$tests)
        detail <- character()
        if (!isTRUE(b$helper_ran)) detail <- "helper-zzz-kerasbackup.R did not load kerasbackup"
        for (i in diffs) {
          detail <- c(detail, sprintf("%s: plain %s | %s %s", a$counts$file[i],
                                      paste(names(ca)[-1], unlist(ca[i, -1]), collapse = " "),
                                      v, paste(unlist(cb[i, -1]), collapse = " ")))
          ta <- a$per_test[a$per_test$file == a$counts$file[i], ]
          tb <- b$per_test[b$per_test$file == a$counts$file[i], ]
          ka <- paste(ta$test, ta$nb, ta$failed, ta$skipped, ta$error, ta$warning)
          kb <- paste(tb$test, tb$nb, tb$failed, tb$skipped, tb$error, tb$warning)
          ch <- unique(c(ta$test[!ka %in% kb], tb$test[!kb %in% ka]))
          for (t in head(ch, 8)) {
            fa <- ta[ta$test == t, ]; fb <- tb[tb$test == t, ]
            fmt <- function(x) if (!nrow(x)) "absent" else   # a name can recur
              paste(sprintf("nb=%d failed=%d skipped=%s error=%s warning=%d", x$nb, x$failed,
                            x$skipped, x$error, x$warning), collapse = " + ")
            detail <- c(detail, sprintf("    test '%s': plain %s | %s %s", t, fmt(fa), v, fmt(fb)))
          }
          if (length(ch) > 8) detail <- c(detail, sprintf("    ... and %d more tests", length(ch) - 8))
        }
        record(sprintf("suite-%s-counts-equal-plain", v),
               length(diffs) == 0 && isTRUE(b$helper_ran), detail)
      }
    }
  })
}

# ---------------------------------------------------------------------------
cat("\n")
nfail <- sum(results == "FAIL")
cat(sprintf("%d checks, %d passed, %d failed (outputs: %s)\n",
            length(results), sum(results == "PASS"), nfail, out))
quit(status = if (nfail) 1 else 0)
