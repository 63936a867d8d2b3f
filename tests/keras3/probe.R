# Loads keras3 and kerasbackup in one of script.R's orders and records, for
# check.R, what the session then sees:
#   * which keras3 exports kerasbackup's exports shadow with a different
#     object (identical() on the two package environments' bindings);
#   * for every S3 method keras3 or kerasbackup registers (and reticulate's
#     conversion hooks on Python builtins), which package's function the
#     method resolves to, from keras3's namespace (what keras3's own code
#     and reticulate dispatch to) and from the global environment (what a
#     user's call dispatches to).
#
#   Rscript probe.R MODE OUT.rds
args <- commandArgs(trailingOnly = TRUE)
mode <- args[[1]]; out <- args[[2]]
q <- function(expr) suppressWarnings(suppressMessages(suppressPackageStartupMessages(expr)))
switch(mode,
  none   = q(library(keras3)),
  after  = { q(library(keras3)); q(library(kerasbackup)) },
  before = { q(library(kerasbackup)); q(library(keras3)) },
  ns     = { q(loadNamespace("kerasbackup")); q(library(keras3)) },
  stop("unknown mode ", mode))

# Registered S3 methods, read from the installed NAMESPACE files (kerasbackup
# need not be loaded for that).
s3_of <- function(pkg) {
  info <- parseNamespaceFile(pkg, dirname(find.package(pkg)))$S3methods
  data.frame(generic = info[, 1], class = info[, 2], stringsAsFactors = FALSE)
}
pairs <- rbind(
  s3_of("keras3"),
  if (nzchar(system.file(package = "kerasbackup"))) s3_of("kerasbackup"),
  data.frame(generic = "py_to_r_wrapper",
             class = c("python.builtin.type", "python.builtin.function",
                       "python.builtin.method", "keras.src.layers.layer.Layer",
                       "keras.src.losses.loss.Loss"),
             stringsAsFactors = FALSE),
  data.frame(generic = "r_to_py", class = "keras_shape",
             stringsAsFactors = FALSE))
# keras3 writes py_to_r_wrapper, kerasbackup reticulate::py_to_r_wrapper:
# one generic. Generics are looked up from keras3's namespace, which
# imports all of them (reticulate, tensorflow, generics, base, ...).
pairs$generic <- sub("^[A-Za-z0-9.]+::", "", pairs$generic)
# Classes of kerasbackup's own objects are its business.
pairs <- pairs[!grepl("^kerasbackup_", pairs$class), ]
pairs <- unique(pairs)

env_label <- function(f) {
  if (is.null(f)) return("<none>")
  e <- environment(f)
  if (is.null(e)) return("<primitive>")
  nm <- environmentName(topenv(e))
  if (!nzchar(nm)) nm <- format(e)
  nm
}
generic_home <- function(gen, from)
  list(name = gen, fun = get0(gen, envir = from, mode = "function"))
table_lookup <- function(gen, cls, from) {
  g <- generic_home(gen, from)
  if (is.null(g$fun)) return("<no generic>")
  defenv <- if (!is.na(w <- .knownS3Generics[g$name])) asNamespace(w) else
    if (is.primitive(g$fun) || g$name %in% c("Ops", "Math", "Summary"))
      .BaseNamespaceEnv else topenv(environment(g$fun))
  tbl <- get0(".__S3MethodsTable__.", envir = defenv, inherits = FALSE)
  if (is.null(tbl)) return("<no table>")
  env_label(get0(paste(g$name, cls, sep = "."), envir = tbl, inherits = FALSE))
}
user_lookup <- function(gen, cls) {
  g <- generic_home(gen, globalenv())
  if (is.null(g$fun)) return("<generic not visible>")
  r <- tryCatch(getS3method(g$name, cls, optional = TRUE, envir = globalenv()),
                error = function(e) NULL)
  env_label(r)
}
k3ns <- asNamespace("keras3")
pairs$from_keras3 <- mapply(table_lookup, pairs$generic, pairs$class,
                            MoreArgs = list(from = k3ns), USE.NAMES = FALSE)
pairs$from_user <- mapply(user_lookup, pairs$generic, pairs$class,
                          USE.NAMES = FALSE)
# The `fit` etc. generics the user's calls reach.
gens <- unique(pairs$generic)
generic_owner <- vapply(gens, function(g) {
  f <- get0(g, envir = globalenv(), mode = "function")
  if (is.null(f)) "<none>" else env_label(f)
}, "")

masked <- character()
if ("package:kerasbackup" %in% search()) {
  kb <- as.environment("package:kerasbackup")
  k3 <- as.environment("package:keras3")
  common <- intersect(ls(kb, all.names = TRUE), ls(k3, all.names = TRUE))
  same <- vapply(common, function(n) identical(get(n, kb), get(n, k3)), NA)
  masked <- sort(common[!same])
}
saveRDS(list(mode = mode, s3 = pairs, generics = generic_owner,
             masked = masked, search = search()), out)
