#!/usr/bin/env Rscript
# Runs keras3's own guides and examples against kerasbackup.
#
#   Rscript tools/check-keras3-vignettes.R /path/to/keras3 [options]
#
# For each vignette of the keras3 checkout (vignettes/**/*.Rmd; the code is
# taken from vignettes-src/ when it is there, since only that copy keeps the
# chunk options such as eval = FALSE), this
#   1. extracts the R code with knitr::purl();
#   2. swaps library(keras3) for library(kerasbackup), and drops the
#      library() calls of tensorflow/tfdatasets (kerasbackup provides the
#      functions the guides use) and their `pkg::` prefixes;
#   3. replaces data downloads with random arrays or files of the same
#      shapes, through the shims below, and shrinks epochs;
#   4. runs it in a fresh Rscript, under a timeout, one top-level expression
#      at a time (visible values are printed, as knitr would), and records the
#      first error;
# then prints a table: vignette, status, seconds, first error.
#
# A vignette listed in `upstream_failures` below runs too. Its status is
# UPSTREAM when it fails with the recorded error, in its last expression
# (so every expression before it ran): the guide's own code fails that way
# on the pinned Keras, with keras3 as with this package. Any other outcome
# (passing included) is reported as it is.
#
# Options:
#   --only=a,b        run only vignettes whose name contains one of these
#   --timeout=SECS    per vignette (default 900)
#   --epochs=N        epochs given to fit() and custom loops (default 1)
#   --keep=DIR        keep the extracted code and logs in DIR
#   --all             also run the excluded vignettes
#
# The exit status is 0 when every vignette that is run passes.

# ------------------------------------------------------------ exclusions

# Vignettes that need what the task excludes: another backend, several
# devices, a network service with no fixed shape to fake, or an R package
# that Debian does not ship. Each with its reason.
excluded <- c(
  "distribution" =
    "another backend and several devices (JAX's keras.distribution API)",
  "distributed_training_with_tensorflow" =
    "several devices (tf.distribute.MirroredStrategy over GPUs)",
  "timeseries_classification_from_scratch" =
    "another backend (use_backend(\"jax\"))",
  "imbalanced_classification" =
    "another backend (use_backend(\"jax\")) and a Kaggle download that needs credentials",
  "timeseries_anomaly_detection" =
    "R package listarrays, which Debian does not ship (CRAN cannot be reached)",
  "index" = "no code (a list of the examples)"
)

# Guides whose code fails on the pinned Keras (3.15.1) whatever the R front
# end: the error their last expression raises, and why.
upstream_failures <- list(
  "intro_to_keras_for_researchers" = list(
    error = "property 'kernel' of 'Dense' object has no setter",
    reason = paste(
      "the hypernetwork loop assigns `dense1$kernel <- w1`; since Keras 3.0.3",
      "(LoRA support) Dense.kernel is a read-only property, so the guide's",
      "last section fails on Keras 3.15.1 under keras3 too")
  )
)

# ------------------------------------------------------------ arguments

parse_args <- function(argv) {
  opts <- list(src = NULL, only = NULL, timeout = 900, epochs = 1L,
               keep = NULL, all = FALSE)
  for (a in argv) {
    if (startsWith(a, "--only=")) opts$only <- strsplit(sub("^--only=", "", a), ",")[[1]]
    else if (startsWith(a, "--timeout=")) opts$timeout <- as.numeric(sub("^--timeout=", "", a))
    else if (startsWith(a, "--epochs=")) opts$epochs <- as.integer(sub("^--epochs=", "", a))
    else if (startsWith(a, "--keep=")) opts$keep <- sub("^--keep=", "", a)
    else if (a == "--all") opts$all <- TRUE
    else if (startsWith(a, "--")) stop("unknown option ", a, call. = FALSE)
    else opts$src <- a
  }
  if (is.null(opts$src) || !dir.exists(file.path(opts$src, "vignettes"))) {
    stop("usage: Rscript tools/check-keras3-vignettes.R /path/to/keras3 ",
         "[--only=a,b] [--timeout=SECS] [--epochs=N] [--keep=DIR] [--all]",
         call. = FALSE)
  }
  opts
}

# ------------------------------------------------------------ extraction

vignette_files <- function(src) {
  rendered <- list.files(file.path(src, "vignettes"), "\\.Rmd$",
                         recursive = TRUE)
  data.frame(
    rel = rendered,
    name = sub("\\.Rmd$", "", basename(rendered)),
    stringsAsFactors = FALSE
  )
}

# The vignette's R code. The rendered copy's code blocks are "``` r" fences
# (not knitr chunks), so they are turned into chunks first.
extract_code <- function(src, rel, out) {
  source_rmd <- file.path(src, "vignettes-src", rel)
  if (!file.exists(source_rmd)) {
    lines <- readLines(file.path(src, "vignettes", rel), warn = FALSE)
    lines <- sub("^```\\s*r\\s*$", "```{r}", lines)
    source_rmd <- tempfile(fileext = ".Rmd")
    writeLines(lines, source_rmd)
  }
  knitr::purl(source_rmd, output = out, quiet = TRUE, documentation = 0L)
  out
}

# Text changes: the library swap, and the edits that make the guides run
# offline and quickly. Each is a (pattern, replacement) pair, applied with
# perl = TRUE.
common_rewrites <- list(
  c("library\\(keras3\\)", "library(kerasbackup)"),
  c("library\\((tensorflow|tfdatasets)\\b[^)]*\\)", "invisible() # library(\\1)"),
  c("\\b(keras3|tensorflow|tfdatasets)::(?=dataset_(mnist|cifar|fashion|imdb|reuters|boston))", ""),
  c("\\bkeras3:::py_func2\\(", "py_func2("),
  c("\\bcoro::loop\\(", "coro_loop("),
  c("\\b(keras3|tensorflow|tfdatasets)::(?!:)", "kerasbackup::"),
  c("\\breticulate::py_require\\(", "py_require("),
  c("\\breticulate::import\\(\"tensorflow_datasets\"\\)", "fake_tfds()"),
  c("\\bweights\\s*=\\s*['\"]imagenet['\"]", "weights = NULL"),
  c("\\b(application_[a-z0-9_]+)\\(\\)", "\\1(weights = NULL)"),
  # R 4.2 (Debian 12) has no S3 dispatch for `@`; x@r[...] is x[...].
  c("@r\\[", "["),
  c("\\bepochs\\s*=\\s*[0-9]+L?", "epochs = .kb_epochs"),
  c("(?m)^(\\s*)epochs\\s*<-\\s*[0-9]+L?\\s*$", "\\1epochs <- .kb_epochs")
)

# Smaller data where a guide hard-codes a sample count larger than the
# fakes (the shapes of each sample are kept).
vignette_rewrites <- list(
  oxford_pets_image_segmentation = list(
    c("val_samples <- 1000", "val_samples <- 48"),
    c("max_dataset_len = 1000", "max_dataset_len = 64")
  )
)

# Calls dropped whole: they only settle name clashes between attached
# packages (conflicted is not on Debian).
dropped_calls <- c("conflicted::conflicts_prefer")

rewrite_code <- function(file, name) {
  code <- paste(readLines(file, warn = FALSE), collapse = "\n")
  for (rw in c(common_rewrites, vignette_rewrites[[name]])) {
    code <- gsub(rw[[1]], rw[[2]], code, perl = TRUE)
  }
  lines <- strsplit(code, "\n", fixed = TRUE)[[1]]
  exprs <- parse(text = lines, keep.source = TRUE)
  refs <- attr(exprs, "srcref")
  for (i in seq_along(exprs)) {
    e <- exprs[[i]]
    if (is.call(e) && paste(deparse(e[[1]]), collapse = "") %in% dropped_calls) {
      span <- refs[[i]][[1]]:refs[[i]][[3]]
      lines[span] <- ""
      lines[span[[1]]] <- paste("invisible() # dropped:", deparse(e[[1]]))
    }
  }
  writeLines(lines, file)
  invisible(file)
}

# ------------------------------------------------------------ shims

# Defined in each run's global environment after library(kerasbackup) has
# been attached (the global environment is searched first, so these mask
# the package's downloaders). Sizes keep the real datasets' shapes; sample
# counts are smaller where that is all the guides need.
shims <- function() {
  .kb_seed <- 20261127L
  set.seed(.kb_seed)
  cat("harness seed:", .kb_seed, "\n")

  fake_images <- function(n, dims, classes) {
    list(x = array(sample.int(256L, n * prod(dims), TRUE) - 1L, c(n, dims)),
         y = sample.int(classes, n, TRUE) - 1L)
  }
  fake_split <- function(n_train, n_test, dims, classes, y_matrix = FALSE) {
    tr <- fake_images(n_train, dims, classes)
    te <- fake_images(n_test, dims, classes)
    if (y_matrix) {
      tr$y <- matrix(tr$y)
      te$y <- matrix(te$y)
    }
    list(train = tr, test = te)
  }
  # MNIST: 28x28 images of 10 digits, 60000/10000 as in the real set (the
  # guides hard-code these counts).
  dataset_mnist <- function(...) fake_split(60000L, 10000L, c(28L, 28L), 10L)
  dataset_fashion_mnist <- dataset_mnist
  dataset_cifar10 <- function(...) fake_split(2000L, 500L, c(32L, 32L, 3L), 10L, TRUE)
  dataset_cifar100 <- function(...) fake_split(2000L, 500L, c(32L, 32L, 3L), 100L, TRUE)
  fake_sequences <- function(n, num_words) {
    lapply(seq_len(n), function(i) {
      sample.int(max(3L, (num_words %||% 10000L) - 1L), sample(20:200, 1), TRUE)
    })
  }
  dataset_imdb <- function(path = NULL, num_words = NULL, ...) {
    list(train = list(x = fake_sequences(2500L, num_words), y = sample(0:1, 2500L, TRUE)),
         test = list(x = fake_sequences(2500L, num_words), y = sample(0:1, 2500L, TRUE)))
  }
  dataset_reuters <- function(path = NULL, num_words = NULL, ...) {
    list(train = list(x = fake_sequences(2000L, num_words), y = sample(0:45, 2000L, TRUE)),
         test = list(x = fake_sequences(500L, num_words), y = sample(0:45, 500L, TRUE)))
  }
  dataset_boston_housing <- function(...) {
    list(train = list(x = matrix(runif(404 * 13), 404), y = runif(404, 5, 50)),
         test = list(x = matrix(runif(102 * 13), 102), y = runif(102, 5, 50)))
  }
  words <- c("the", "a", "movie", "film", "good", "bad", "great", "awful",
             "plot", "actor", "story", "was", "is", "not", "very", "i", "it")
  sentence <- function(n) paste(sample(words, n, TRUE), collapse = " ")

  # Files the guides download. Each is written where the guide then reads it.
  fake_download <- function(url, destfile = NULL) {
    base <- basename(url)
    if (base == "spa-eng.zip") {
      dir.create("spa-eng", showWarnings = FALSE)
      pairs <- vapply(1:2000, function(i) {
        paste0(sentence(sample(3:12, 1)), "\t", sentence(sample(3:12, 1)))
      }, "")
      writeLines(pairs, "spa-eng/spa.txt")
      return(normalizePath("."))
    }
    if (base == "heart.csv") {
      n <- 303L
      df <- data.frame(
        age = sample(29:77, n, TRUE), sex = sample(0:1, n, TRUE),
        cp = sample(0:4, n, TRUE), trestbps = sample(94:200, n, TRUE),
        chol = sample(126:564, n, TRUE), fbs = sample(0:1, n, TRUE),
        restecg = sample(0:2, n, TRUE), thalach = sample(71:202, n, TRUE),
        exang = sample(0:1, n, TRUE), oldpeak = round(runif(n, 0, 6.2), 1),
        slope = sample(1:3, n, TRUE), ca = sample(0:3, n, TRUE),
        thal = sample(c("fixed", "normal", "reversible"), n, TRUE),
        target = sample(0:1, n, TRUE)
      )
      file <- tempfile(fileext = ".csv")
      utils::write.csv(df, file, row.names = FALSE, quote = FALSE)
      return(file)
    }
    if (!is.null(destfile)) {
      writeLines("fake", destfile)
      return(destfile)
    }
    stop("the harness has no fake for ", url)
  }
  get_file <- function(fname = NULL, origin = NULL, ...) fake_download(origin)
  download.file <- function(url, destfile, ...) {
    fake_download(url, destfile)
    invisible(0L)
  }
  untar <- function(tarfile, exdir = ".", ...) {
    if (basename(tarfile) == "aclImdb_v1.tar.gz") {
      for (split in c("train", "test")) for (label in c("pos", "neg")) {
        dir <- file.path(exdir, "aclImdb", split, label)
        dir.create(dir, recursive = TRUE, showWarnings = FALSE)
        for (i in 1:200) {
          writeLines(sentence(sample(20:80, 1)),
                     file.path(dir, sprintf("%d_%d.txt", i, sample(1:10, 1))))
        }
      }
      writeLines(sentence(40), file.path(exdir, "aclImdb/train/pos/4229_10.txt"))
      return(invisible(0L))
    }
    if (basename(tarfile) %in% c("images.tar.gz", "annotations.tar.gz")) {
      # Oxford pets: photos (JPEG) and trimaps (PNG, values 1 to 3).
      n <- 128L
      images <- file.path(exdir, "images")
      trimaps <- file.path(exdir, "annotations", "trimaps")
      dir.create(images, recursive = TRUE, showWarnings = FALSE)
      dir.create(trimaps, recursive = TRUE, showWarnings = FALSE)
      for (i in seq_len(n)) {
        stem <- sprintf("pet_%04d", i)
        if (basename(tarfile) == "images.tar.gz") {
          jpeg::writeJPEG(array(runif(64 * 64 * 3), c(64, 64, 3)),
                          file.path(images, paste0(stem, ".jpg")))
        } else {
          png::writePNG(matrix(sample(1:3, 64 * 64, TRUE) / 255, 64),
                        file.path(trimaps, paste0(stem, ".png")))
        }
      }
      return(invisible(0L))
    }
    utils::untar(tarfile, exdir = exdir, ...)
  }
  read_csv <- function(file, ...) {
    if (grepl("^https?://", file)) file <- fake_download(file)
    readr::read_csv(file, ...)
  }
  # tensorflow_datasets' cats_vs_dogs: (image, label) pairs of varying size.
  fake_tfds <- function() {
    list(load = function(name, split, as_supervised = TRUE, ...) {
      lapply(split, function(s) {
        n <- 32L
        imgs <- lapply(seq_len(n), function(i) {
          h <- sample(120:200, 1)
          w <- sample(120:200, 1)
          array(sample.int(256L, h * w * 3L, TRUE) - 1L, c(h, w, 3L))
        })
        gen <- reticulate::py_eval("lambda imgs, labels: (lambda: ((i, l) for i, l in zip(imgs, labels)))")
        ds <- tf$data$Dataset$from_generator(
          gen(lapply(imgs, function(a) np_array(a, dtype = "uint8")),
              as.list(sample(0:1, n, TRUE))),
          output_signature = tuple(
            tf$TensorSpec(shape = list(NULL, NULL, 3L), dtype = "uint8"),
            tf$TensorSpec(shape = list(), dtype = "int64"))
        )
        ds$apply(tf$data$experimental$assert_cardinality(n))
      })
    })
  }
  # reticulate 1.28 has no py_require(): the Python packages come from the
  # project's set-up instead.
  py_require <- function(...) invisible(NULL)
  # coro (not on Debian): coro::loop(for (x in iterable) body) runs the loop
  # over a Python iterable. The loop is built in the caller's environment so
  # that break and next in the body work.
  coro_loop <- function(loop) {
    expr <- substitute(loop)
    env <- parent.frame()
    it <- reticulate::as_iterator(eval(expr[[3L]], env))
    var <- expr[[2L]]
    eval(bquote(repeat {
      .(var) <- reticulate::iter_next(.(it))
      if (is.null(.(var))) break
      .(expr[[4L]])
    }), env)
    invisible()
  }
  # keras3's internal R-function-to-Python helper, used by one guide: an R
  # function carrying the name Python should see (kerasbackup converts it
  # when it is passed to Keras).
  py_func2 <- function(fn, convert = TRUE, name = NULL) {
    attr(fn, "py_function_name") <- name
    fn
  }
  for (name in c("dataset_mnist", "dataset_fashion_mnist", "dataset_cifar10",
                 "dataset_cifar100", "dataset_imdb", "dataset_reuters",
                 "dataset_boston_housing", "get_file", "download.file",
                 "untar", "read_csv", "fake_tfds", "py_require", "py_func2",
                 "coro_loop")) {
    assign(name, get(name), envir = globalenv())
  }
  invisible()
}

# ------------------------------------------------------------ running

runner_code <- function(code_file, status_file, epochs) {
  sprintf('
.kb_status <- function(...) saveRDS(list(...), %s)
.kb_epochs <- %dL
`%%||%%` <- function(x, y) if (is.null(x)) y else x
pdf(NULL)
options(warn = 1, keras.verbose = 2)
suppressPackageStartupMessages(library(kerasbackup))
local(%s)
.kb_exprs <- parse(%s, keep.source = TRUE)
.kb_refs <- attr(.kb_exprs, "srcref")
for (.kb_i in seq_along(.kb_exprs)) {
  .kb_line <- .kb_refs[[.kb_i]][[1]]
  .kb_text <- paste(as.character(.kb_refs[[.kb_i]]), collapse = "\\n")
  .kb_status(status = "RUNNING", line = .kb_line, code = .kb_text)
  .kb_err <- tryCatch({
    .kb_v <- withVisible(eval(.kb_exprs[[.kb_i]], globalenv()))
    if (.kb_v$visible) print(.kb_v$value)
    NULL
  }, error = function(e) e)
  if (!is.null(.kb_err)) {
    .kb_status(status = "FAIL", line = .kb_line, code = .kb_text,
               error = paste(conditionMessage(.kb_err), collapse = "\\n"),
               last = .kb_i == length(.kb_exprs))
    quit(status = 1)
  }
}
.kb_status(status = "PASS")
', deparse(status_file), epochs, paste(deparse(body(shims)), collapse = "\n"),
     deparse(code_file))
}

run_one <- function(v, opts, workdir) {
  dir <- file.path(workdir, v$name)
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  code_file <- normalizePath(file.path(dir, "code.R"), mustWork = FALSE)
  extract_code(opts$src, v$rel, code_file)
  rewrite_code(code_file, v$name)
  status_file <- file.path(normalizePath(dir), "status.rds")
  runner <- file.path(dir, "run.R")
  writeLines(runner_code(code_file, status_file, opts$epochs), runner)
  log <- file.path(normalizePath(dir), "log.txt")
  run_dir <- file.path(dir, "cwd")
  dir.create(run_dir, showWarnings = FALSE)
  start <- Sys.time()
  rc <- withr_dir(run_dir, system2(
    "timeout", c("--kill-after=20", as.character(opts$timeout),
                 file.path(R.home("bin"), "Rscript"), "--no-init-file",
                 normalizePath(runner)),
    stdout = log, stderr = log
  ))
  secs <- as.numeric(difftime(Sys.time(), start, units = "secs"))
  status <- if (file.exists(status_file)) readRDS(status_file) else
    list(status = "FAIL", error = "the runner did not start (see the log)")
  if (rc %in% c(124L, 137L)) {
    status$status <- "TIMEOUT"
    status$error <- sprintf("over %gs, at line %s", opts$timeout, status$line %||% "?")
  } else if (identical(status$status, "RUNNING")) {
    status$status <- "CRASH"
    status$error <- sprintf("R exited with status %d at line %s (see the log)",
                            rc, status$line)
  }
  known <- upstream_failures[[v$name]]
  if (!is.null(known) && identical(status$status, "FAIL") &&
      isTRUE(status$last) && grepl(known$error, status$error, fixed = TRUE)) {
    status$status <- "UPSTREAM"
  }
  status$seconds <- round(secs)
  status$log <- log
  status
}

withr_dir <- function(dir, expr) {
  old <- setwd(dir)
  on.exit(setwd(old))
  expr
}

`%||%` <- function(x, y) if (is.null(x)) y else x

one_line <- function(x, width = 110) {
  x <- gsub("\\s+", " ", x %||% "")
  if (nchar(x) > width) paste0(substr(x, 1, width - 3), "...") else x
}

main <- function(argv = commandArgs(trailingOnly = TRUE)) {
  opts <- parse_args(argv)
  vignettes <- vignette_files(opts$src)
  if (!is.null(opts$only)) {
    keep <- Reduce(`|`, lapply(opts$only, function(p) grepl(p, vignettes$name, fixed = TRUE)))
    vignettes <- vignettes[keep, , drop = FALSE]
  }
  workdir <- opts$keep %||% tempfile("keras3-vignettes-")
  dir.create(workdir, recursive = TRUE, showWarnings = FALSE)
  rows <- list()
  for (i in seq_len(nrow(vignettes))) {
    v <- vignettes[i, ]
    reason <- excluded[v$name]
    if (!is.na(reason) && !opts$all) {
      rows[[i]] <- data.frame(vignette = v$rel, status = "EXCLUDED", seconds = NA,
                              detail = reason, stringsAsFactors = FALSE)
    } else {
      cat(sprintf("[%d/%d] %s ... ", i, nrow(vignettes), v$rel))
      s <- run_one(v, opts, workdir)
      detail <- if (s$status == "PASS") "" else
        sprintf("line %s: %s -- %s", s$line %||% "?", one_line(s$code, 60),
                one_line(s$error, 160))
      if (s$status == "UPSTREAM") {
        detail <- paste0(one_line(upstream_failures[[v$name]]$reason, 400),
                         " (line ", s$line, ")")
      }
      cat(s$status, sprintf("(%ss)\n", s$seconds))
      rows[[i]] <- data.frame(vignette = v$rel, status = s$status,
                              seconds = s$seconds, detail = detail,
                              stringsAsFactors = FALSE)
    }
  }
  table <- do.call(rbind, rows)
  utils::write.table(table, file.path(workdir, "results.tsv"), sep = "\t",
                     row.names = FALSE, quote = FALSE)
  cat("\n")
  w <- max(nchar(table$vignette))
  cat(sprintf("%-*s  %-8s  %6s  %s\n", w, "vignette", "status", "secs", "first error / reason"))
  for (i in seq_len(nrow(table))) {
    cat(sprintf("%-*s  %-8s  %6s  %s\n", w, table$vignette[i], table$status[i],
                ifelse(is.na(table$seconds[i]), "", table$seconds[i]),
                table$detail[i]))
  }
  ran <- table$status != "EXCLUDED"
  ok <- table$status %in% c("PASS", "UPSTREAM")
  cat(sprintf(paste("\n%d passed, %d failed as the guide does on the pinned Keras,",
                    "%d failed, %d excluded (code and logs in %s)\n"),
              sum(table$status == "PASS"), sum(table$status == "UPSTREAM"),
              sum(ran & !ok), sum(!ran), workdir))
  invisible(all(ok[ran]))
}

if (sys.nframe() == 0L) {
  ok <- main()
  quit(status = if (isTRUE(ok)) 0L else 1L)
}
