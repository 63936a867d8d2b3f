#' Back up and restore the training state
#'
#' `callback_backup_and_restore()` recovers training from an interruption in
#' the middle of a [fit()][fit.keras.src.models.model.Model]: it backs up the
#' whole training state in `backup_dir` (at the end of each epoch by
#' default) and, when the same training starts again, restores the most
#' recently saved state at the beginning of the new `fit()`. When the fit
#' completes, the checkpoint is deleted.
#'
#' Unlike Keras' own `BackupAndRestore`, every checkpoint is complete and
#' atomic: it is written into a staging directory inside `backup_dir`,
#' fsynced, checksummed and published with a single rename, and it is
#' verified before it is loaded. A kill at any instant (`kill -9` included)
#' leaves a checkpoint that verifies. The checkpoint holds the model and
#' optimizer variables (optimizers a custom `train_step()` keeps as attributes,
#' such as a GAN's `self$d_optimizer`, included), the epoch and the batch
#' within it, the random
#' generators, the history and the state of the other callbacks, so with this
#' package's `fit()` an interrupted run resumes at the exact next batch with
#' the same data order, and ends with the same weights as an uninterrupted
#' run.
#'
#' The user is responsible for bringing jobs back after the interruption. The
#' model restored from a checkpoint is expected to be the same as the one
#' that was backed up: a fingerprint of the model, optimizer, loss, metrics,
#' batch size and data size is saved, and a mismatch stops with a
#' `kerasbackup_fingerprint_mismatch` error unless `allow_changes` says
#' otherwise. Raising `epochs` to train longer is a legitimate resume. The
#' model must be fully built when training starts (`fit()` builds it from the
#' first batch through its `call()`); layers that would create their variables
#' inside the first train step, after the restore, stop it at once with a
#' `kerasbackup_unbuilt_state` error naming them.
#'
#' @section On-disk layout:
#' `backup_dir` holds a `.kerasbackup` marker, a `.lock` file (an OS file
#' lock held by the running fit) and one checkpoint directory `ckpt-<n>` (two
#' with `double_checkpoint = TRUE`), each with a `manifest.json` listing every
#' file's size and checksum. Use [backup_info()] to inspect it.
#'
#' @section Object storage:
#' `backup_dir` may be a URL, `"s3://bucket/prefix"` (AWS S3 or an
#' S3-compatible server such as MinIO) or `"gs://bucket/prefix"` (Google
#' Cloud Storage), so that the checkpoint outlives a spot VM or a preempted
#' pod and its disk. The URL is passed on as it is. The guarantees are the
#' same as on a local disk: a checkpoint's objects are uploaded under a new
#' prefix, its manifest is created with a conditional write, and a `LATEST`
#' object is moved by compare-and-swap, so a kill at any instant leaves the
#' previous checkpoint visible and never a partial one; loads verify sizes
#' and checksums and fall back as locally. Instead of a file lock, the
#' running fit holds a lease object (`.lease`) that it renews; a lease left
#' by a process killed on another machine expires 60 seconds after its last
#' renewal (see `lease_wait`). These guarantees rely on the server enforcing
#' conditional writes (S3 since 2024, GCS, MinIO do) and, for taking over a
#' dead writer's lease, on clocks that agree to within seconds.
#'
#' Credentials and endpoints are found as the AWS and Google tools find
#' them: the AWS environment variables and profiles (with `AWS_ENDPOINT_URL`
#' for S3-compatible servers), Google application-default credentials (with
#' `STORAGE_EMULATOR_HOST` for emulators), or explicitly through
#' `storage_options`. They are never printed, logged or written into a
#' checkpoint. The client libraries (`s3fs`, `gcsfs`) are installed by
#' [install_keras()].
#'
#' @section Preemption:
#' With `save_before_preemption = TRUE`, handlers for `preemption_signals` are
#' installed at train begin and the previous ones are put back at train end
#' (R's own C-level handlers included).
#' * First signal: the current batch finishes, a checkpoint of that exact
#'   point is published, and `fit()` stops with a `kerasbackup_preempted`
#'   error whose message names the directory, the epoch and the batch, and
#'   the time from the signal to the published checkpoint. `Rscript` then
#'   exits with a non-zero status; running the same script again resumes
#'   exactly.
#' * A signal during a save lets the save complete.
#' * A second signal stops at once (also `kerasbackup_preempted`), without
#'   saving; the previous checkpoint stays intact.
#' * Before the handlers are installed (before `fit()` reaches train begin) a
#'   signal has its usual effect. Before the first batch, `fit()` stops
#'   having saved the starting point.
#' * After the last batch, `fit()` still stops with `kerasbackup_preempted`,
#'   keeping a checkpoint of the final state, so the rerun returns at once;
#'   this holds for a signal during the final save or during the deletion of
#'   the checkpoint (`delete_checkpoint = TRUE`) too.
#' * `SIGINT` (Ctrl-C) is not handled unless listed: R's own handling then
#'   applies.
#'
#' @param backup_dir String, path of the directory where the data needed to
#'   restore the model is stored. The directory cannot be reused elsewhere to
#'   store other files, e.g. by the backup_and_restore callback of another
#'   training run, or by another callback (e.g. [callback_model_checkpoint()])
#'   of the same training run. A second live fit on the same directory stops
#'   with a `kerasbackup_locked` error.
#' @param save_freq `"epoch"`, an integer, or `FALSE`. When set to `"epoch"`,
#'   the callback saves the checkpoint at the end of each epoch. When set to an
#'   integer, the callback saves the checkpoint every `save_freq` batches. Set
#'   `save_freq = FALSE` only if using preemption checkpointing (i.e. with
#'   `save_before_preemption = TRUE`).
#' @param delete_checkpoint Boolean. If `TRUE`, the checkpoint is deleted
#'   after training is finished; only files this package wrote are removed,
#'   and the save that would fall due at the very end is not written. Use
#'   `FALSE` to keep the checkpoint for future usage. Defaults to `TRUE`.
#' @param double_checkpoint Boolean. Keep the previous checkpoint too, as a
#'   fallback when the newest one fails verification. Defaults to `FALSE`.
#' @param save_before_preemption Boolean. When `TRUE`, one of
#'   `preemption_signals` makes the callback finish the current batch, save a
#'   checkpoint and stop `fit()` with a `kerasbackup_preempted` error.
#' @param preemption_signals `NULL` (the default: `"SIGTERM"` and
#'   `"SIGUSR1"`), or a character vector of the signal names handled when
#'   `save_before_preemption = TRUE`: any of `"SIGTERM"`, `"SIGUSR1"`,
#'   `"SIGUSR2"`, `"SIGINT"`, `"SIGHUP"`, `"SIGQUIT"`, `"SIGALRM"`,
#'   `"SIGXCPU"`.
#' @param async_save Boolean. Write checkpoints in a background thread, so
#'   training only waits for the copy of the state to memory (one save at a
#'   time: a save that falls due while the previous one is still being
#'   written waits for it; `fit()` waits for the last one before it returns;
#'   a failed background save stops training at the next batch). Defaults to
#'   `TRUE`: on the benchmark it blocks training 5-10 times less than a
#'   synchronous save, for one extra host copy of the state in memory, kept
#'   after `fit()` returns so that the next `fit()` in the session reuses it.
#' @param on_save_error `"stop"` (the default) stops training when a save
#'   fails; `"warn"` warns and trains on. The previous checkpoint is kept
#'   either way.
#' @param allow_changes `FALSE` (the default), `TRUE`, or a character vector of
#'   fingerprint items (such as `"optimizer"` or `"batch size"`) that may
#'   differ between the checkpoint and the resumed run.
#' @param storage_options `NULL` (the default) or a named list of options for
#'   the object store of a URL `backup_dir`, passed to `s3fs` or `gcsfs` as
#'   fsspec `storage_options`, for example `list(endpoint_url =
#'   "http://minio:9000", key = Sys.getenv("MY_KEY"), secret =
#'   Sys.getenv("MY_SECRET"))` or `list(token = "/path/to/key.json")`. Not
#'   allowed with a local `backup_dir`. Values are never printed, logged or
#'   saved.
#' @param lease_wait For a URL `backup_dir`: how many seconds `fit()` waits
#'   at its start for another process's lease on `backup_dir` to be released
#'   or to expire, before it stops with a `kerasbackup_locked` error. The
#'   default, 90, lets a job that was restarted after its previous run was
#'   killed on another machine (a preempted pod, a requeued SLURM job) resume
#'   without an error: the dead run's lease expires within 60 seconds. A
#'   second live run on the same `backup_dir` is refused after this wait.
#'   `0` refuses at once.
#'
#' @returns A `Callback` instance (a Python `keras.callbacks.Callback`) that
#'   can be passed to [fit()][fit.keras.src.models.model.Model].
#' @family callbacks
#' @export
#' @examples
#' \dontshow{if (kerasbackup:::python_ready()) withAutoprint(\{ # examplesIf}
#' @example inst/examples/backup_and_restore.R
#' @examples
#' \dontshow{\}) # examplesIf}
callback_backup_and_restore <- function(backup_dir,
                                        save_freq = "epoch",
                                        delete_checkpoint = TRUE,
                                        double_checkpoint = FALSE,
                                        save_before_preemption = FALSE,
                                        preemption_signals = NULL,
                                        async_save = TRUE,
                                        on_save_error = c("stop", "warn"),
                                        allow_changes = FALSE,
                                        storage_options = NULL,
                                        lease_wait = 90) {
  if (missing(backup_dir) || !is_string(backup_dir)) {
    abort_invalid_arg(
      "backup_dir", if (missing(backup_dir)) NULL else backup_dir,
      "a single non-empty string (a directory path or a URL)"
    )
  }
  save_freq <- check_save_freq(save_freq)
  for (arg in c("delete_checkpoint", "double_checkpoint",
                "save_before_preemption", "async_save")) {
    value <- get(arg)
    if (!is_flag(value)) abort_invalid_arg(arg, value, "`TRUE` or `FALSE`")
  }
  if (isFALSE(save_freq) && !save_before_preemption) {
    cli::cli_abort(
      c("{.code save_freq = FALSE} needs {.code save_before_preemption = TRUE}.",
        i = "With {.code save_freq = FALSE} the callback saves only when a
             preemption signal arrives; without preemption saving it would
             never save anything."),
      class = c("kerasbackup_invalid_argument", "kerasbackup_error"),
      arg = "save_freq", value = save_freq
    )
  }
  check_preemption_signals(preemption_signals)
  if (!is.character(on_save_error) || anyNA(on_save_error) ||
      !all(on_save_error %in% c("stop", "warn")) ||
      (length(on_save_error) != 1 && !identical(on_save_error, c("stop", "warn")))) {
    abort_invalid_arg("on_save_error", on_save_error, '"stop" or "warn"')
  }
  on_save_error <- on_save_error[[1]]
  if (!(is_flag(allow_changes) ||
        (is.character(allow_changes) && length(allow_changes) > 0 &&
         !anyNA(allow_changes)))) {
    abort_invalid_arg("allow_changes", allow_changes,
                      "`TRUE`, `FALSE` or a character vector of item names")
  }
  if (is.character(allow_changes)) allow_changes <- as.list(allow_changes)
  storage_options <- check_storage_options(storage_options, backup_dir)
  if (!(is.numeric(lease_wait) && !is.object(lease_wait) &&
        length(lease_wait) == 1L && !is.na(lease_wait) &&
        is.finite(lease_wait) && lease_wait >= 0)) {
    abort_invalid_arg("lease_wait", lease_wait, "a number of seconds >= 0")
  }
  # Last: the rules for a URL are Python's, and R's checks above need none.
  check_backup_dir_value(backup_dir)

  kb <- py_kb()
  with_py_errors(kb$BackupAndRestore(
    backup_dir = backup_dir_arg(backup_dir),
    save_freq = save_freq,
    double_checkpoint = double_checkpoint,
    delete_checkpoint = delete_checkpoint,
    save_before_preemption = save_before_preemption,
    preemption_signals = if (!is.null(preemption_signals)) as.list(preemption_signals),
    async_save = async_save,
    on_save_error = on_save_error,
    allow_changes = allow_changes,
    storage_options = storage_options,
    lease_wait = as.double(lease_wait)
  ))
}

# A URL no store can use, or a path that is a URL with a typo, is a bad
# argument. The stores know the schemes; their message shows no credentials.
check_backup_dir_value <- function(backup_dir, call = rlang::caller_env()) {
  problem <- py_bridge()$backup_dir_problem(backup_dir)
  if (is.null(problem)) return(invisible())
  cli::cli_abort(
    c("{.arg backup_dir} must be a directory path or the URL of a supported
       object store (s3://, gs://).",
      x = "{problem[[1]]}"),
    class = c("kerasbackup_invalid_argument", "kerasbackup_error"),
    arg = "backup_dir", value = problem[[2]], call = call
  )
}

# A URL (s3://, gs://, file://, ...) goes to Python untouched; a path gets
# `~` expanded.
is_url <- function(x) grepl("^[A-Za-z][A-Za-z0-9+.-]*://", x)

backup_dir_arg <- function(backup_dir) {
  if (is_url(backup_dir)) backup_dir else path.expand(backup_dir)
}

# NULL or a named list (nested named lists allowed: they become dicts). The
# values may be credentials: messages name only the shape, never a value.
check_storage_options <- function(storage_options, backup_dir,
                                  call = rlang::caller_env()) {
  if (is.null(storage_options)) return(NULL)
  accepted <- "`NULL` or a named list of fsspec options"
  nms <- names(storage_options)
  if (!is.list(storage_options) || is.object(storage_options) ||
      (length(storage_options) > 0 &&
       (is.null(nms) || anyNA(nms) || !all(nzchar(nms)) || anyDuplicated(nms)))) {
    abort_invalid_arg("storage_options", storage_options, accepted, call = call,
                      shown = describe_shape(storage_options))
  }
  if (length(storage_options) == 0) return(NULL)
  if (!is_url(backup_dir) || grepl("^file://", backup_dir, ignore.case = TRUE)) {
    abort_invalid_arg(
      "storage_options", storage_options,
      paste0("`NULL` for a local `backup_dir` (they apply to URLs such as ",
             '"s3://bucket/prefix")'),
      call = call, shown = describe_shape(storage_options))
  }
  storage_options
}

# What an argument holding secrets looks like, without its values.
describe_shape <- function(x) {
  if (!is.list(x) || is.object(x)) return(paste0("a ", class(x)[[1]]))
  nms <- names(x)
  if (is.null(nms)) return(sprintf("an unnamed list of length %d", length(x)))
  nms[is.na(nms) | !nzchar(nms)] <- "<no name>"
  paste0("a list with names ", paste(nms, collapse = ", "))
}

# The signals preemption saving accepts and handles by default, from the
# list the Python package reads too (inst/python/kerasbackup/signals.txt).
preemption_signal_list <- function() {
  path <- system.file("python", "kerasbackup", "signals.txt",
                      package = "kerasbackup", mustWork = TRUE)
  lines <- trimws(sub("#.*$", "", readLines(path, warn = FALSE)))
  words <- strsplit(lines[nzchar(lines)], "[[:space:]]+")
  names <- vapply(words, `[[`, "", 1)
  default <- vapply(words, function(w) identical(w[-1], "default"), TRUE)
  list(accepted = names, default = names[default])
}

check_preemption_signals <- function(preemption_signals,
                                      call = rlang::caller_env()) {
  if (is.null(preemption_signals)) return(invisible())
  signals <- preemption_signal_list()
  if (!is.character(preemption_signals) || length(preemption_signals) == 0 ||
      anyNA(preemption_signals) ||
      !all(preemption_signals %in% signals$accepted)) {
    abort_invalid_arg(
      "preemption_signals", preemption_signals,
      paste0("`NULL` (", paste0('"', signals$default, '"', collapse = " and "),
             ") or a character vector of signal names from ",
             paste0('"', signals$accepted, '"', collapse = ", ")),
      call = call
    )
  }
  invisible()
}

check_save_freq <- function(save_freq, call = rlang::caller_env()) {
  accepted <- '"epoch", a positive whole number, or `FALSE`'
  if (identical(save_freq, "epoch") || isFALSE(save_freq)) {
    return(save_freq)
  }
  if (is.numeric(save_freq) && !is.object(save_freq) &&
      is_whole_number(save_freq, min = 1) && save_freq <= .Machine$integer.max) {
    return(as.integer(save_freq))
  }
  abort_invalid_arg("save_freq", save_freq, accepted, call = call)
}

#' Describe the checkpoints in a backup directory
#'
#' Lists what a [callback_backup_and_restore()] directory holds, without a
#' model and without taking its lock (or its lease, on object storage), so it
#' can be used to decide whether to resume (or while another process
#' trains).
#'
#' @param backup_dir Path of the backup directory, or its URL
#'   (`"s3://bucket/prefix"`, `"gs://bucket/prefix"`).
#' @param storage_options `NULL` or a named list of options for the object
#'   store of a URL `backup_dir` (see [callback_backup_and_restore()]).
#' @returns A data frame with one row per checkpoint, oldest first: `path`,
#'   `epoch` (1-based, the epoch training resumes at), `batch` (batches done
#'   in that epoch), `created` (`POSIXct`), `size_bytes`, `verified` (whether
#'   every file matches the manifest) and `problem` (why not, or `NA`).
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' backup_info(tempfile())
backup_info <- function(backup_dir, storage_options = NULL) {
  if (!is_string(backup_dir)) {
    abort_invalid_arg("backup_dir", backup_dir,
                      "a single non-empty string (a directory path or a URL)")
  }
  storage_options <- check_storage_options(storage_options, backup_dir)
  check_backup_dir_value(backup_dir)
  rows <- with_py_errors(py_kb()$backup_info(
    backup_dir_arg(backup_dir), storage_options = storage_options
  ))
  field <- function(name, na, convert) {
    vapply(rows, function(r) {
      v <- r[[name]]
      if (is.null(v)) na else convert(v)
    }, na)
  }
  data.frame(
    path = field("path", NA_character_, as.character),
    epoch = field("epoch", NA_integer_, as.integer) + 1L,
    batch = field("batch", NA_integer_, as.integer),
    created = as.POSIXct(field("created", NA_character_, as.character),
                         format = "%Y-%m-%dT%H:%M:%OS", tz = "UTC"),
    size_bytes = field("size_bytes", NA_real_, as.numeric),
    verified = field("verified", NA, as.logical),
    problem = field("problem", NA_character_, as.character),
    stringsAsFactors = FALSE
  )
}

python_ready <- function() {
  tryCatch({
    check_python()
    TRUE
  }, error = function(e) FALSE)
}
