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
#'   synchronous save, for one extra host copy of the state in memory.
#' @param on_save_error `"stop"` (the default) stops training when a save
#'   fails; `"warn"` warns and trains on. The previous checkpoint is kept
#'   either way.
#' @param allow_changes `FALSE` (the default), `TRUE`, or a character vector of
#'   fingerprint items (such as `"optimizer"` or `"batch size"`) that may
#'   differ between the checkpoint and the resumed run.
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
                                        allow_changes = FALSE) {
  if (missing(backup_dir) || !is_string(backup_dir)) {
    abort_invalid_arg(
      "backup_dir", if (missing(backup_dir)) NULL else backup_dir,
      "a single non-empty string (a directory path)"
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

  kb <- py_kb()
  with_py_errors(kb$BackupAndRestore(
    backup_dir = path.expand(backup_dir),
    save_freq = save_freq,
    double_checkpoint = double_checkpoint,
    delete_checkpoint = delete_checkpoint,
    save_before_preemption = save_before_preemption,
    preemption_signals = if (!is.null(preemption_signals)) as.list(preemption_signals),
    async_save = async_save,
    on_save_error = on_save_error,
    allow_changes = allow_changes
  ))
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
#' model and without taking its lock, so it can be used to decide whether to
#' resume (or while another process trains).
#'
#' @param backup_dir Path of the backup directory.
#' @returns A data frame with one row per checkpoint, oldest first: `path`,
#'   `epoch` (1-based, the epoch training resumes at), `batch` (batches done
#'   in that epoch), `created` (`POSIXct`), `size_bytes`, `verified` (whether
#'   every file matches the manifest) and `problem` (why not, or `NA`).
#' @export
#' @examplesIf kerasbackup:::python_ready()
#' backup_info(tempfile())
backup_info <- function(backup_dir) {
  if (!is_string(backup_dir)) {
    abort_invalid_arg("backup_dir", backup_dir,
                      "a single non-empty string (a directory path)")
  }
  rows <- with_py_errors(py_kb()$backup_info(path.expand(backup_dir)))
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
