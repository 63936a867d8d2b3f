# Which of keras3's exported names this package provides, per family.
#
#   Rscript tools/coverage.R            (or: make coverage)
#
# Reads the package's NAMESPACE, tools/keras3-exports.txt (keras3's exported
# names) and tools/keras3-not-covered.tsv (why a name is missing). Prints,
# per family, covered / keras3's total and each missing name with its
# reason. Exits with status 1 if a missing name has no recorded reason, or
# a recorded reason is stale (the name is now covered).

root <- local({
  args <- commandArgs(trailingOnly = FALSE)
  file <- sub("^--file=", "", grep("^--file=", args, value = TRUE))
  if (length(file)) dirname(dirname(normalizePath(file))) else getwd()
})

read_lines <- function(path) {
  x <- readLines(file.path(root, path), warn = FALSE)
  x[nzchar(x) & !startsWith(x, "#")]
}

exports <- local({
  ns <- parseNamespaceFile(basename(root), dirname(root))
  ns$exports
})
keras3 <- read_lines("tools/keras3-exports.txt")
reasons <- local({
  rows <- strsplit(read_lines("tools/keras3-not-covered.tsv"), "\t", fixed = TRUE)
  stats::setNames(vapply(rows, `[[`, "", 2L), vapply(rows, `[[`, "", 1L))
})

families <- c(
  layer_ = "layers", rnn_cell = "layers", bidirectional = "layers",
  time_distributed = "layers", op_ = "ops", activation_ = "activations",
  loss_ = "losses", metric_ = "metrics", optimizer_ = "optimizers",
  learning_rate_schedule_ = "learning rate schedules", initializer_ = "initializers",
  regularizer_ = "regularizers", constraint_ = "constraints", callback_ = "callbacks",
  random_ = "random", config_ = "config", application_ = "applications",
  imagenet_ = "applications", dataset_ = "datasets", feature_ = "feature space",
  image_ = "image utilities"
)
family_of <- function(name) {
  hit <- names(families)[startsWith(name, names(families))]
  if (length(hit)) families[[hit[[1L]]]] else "other"
}

fam <- vapply(keras3, family_of, "")
covered <- keras3 %in% exports
failed <- FALSE

cat(sprintf("%-26s %8s\n", "family", "covered"))
for (f in unique(c(unname(families), "other"))) {
  sel <- fam == f
  if (!any(sel)) next
  cat(sprintf("%-26s %4d/%-4d\n", f, sum(covered & sel), sum(sel)))
}
cat(sprintf("%-26s %4d/%-4d\n\n", "all", sum(covered), length(keras3)))

missing <- keras3[!covered]
if (length(missing)) {
  cat("Not covered:\n")
  for (f in unique(fam[!covered])) {
    cat(" ", f, "\n")
    for (name in missing[fam[!covered] == f]) {
      why <- if (name %in% names(reasons)) reasons[[name]] else {
        failed <- TRUE
        "NO REASON RECORDED (add one to tools/keras3-not-covered.tsv)"
      }
      cat(sprintf("    %-36s %s\n", name, why))
    }
  }
}

stale <- intersect(names(reasons), exports)
if (length(stale)) {
  failed <- TRUE
  cat("\nCovered now, but still listed in tools/keras3-not-covered.tsv:",
      paste(stale, collapse = ", "), "\n")
}
extra <- setdiff(exports, keras3)
cat(sprintf("\nAlso exported (not in keras3): %d names, e.g. %s\n", length(extra),
            paste(utils::head(sort(extra), 8), collapse = ", ")))
if (failed) quit(status = 1)
