# Training over several processes with JAX: starting jax.distributed.

#' Join a multi-process JAX training job
#'
#' Starts `jax.distributed` in this process, as Keras'
#' `keras.distribution.initialize()` does, but with bounded waits, then (by
#' default) trains data-parallel over every device of every process. Call it
#' once per process, after `use_backend("jax")` and before any other Keras
#' function; then build, compile and `fit()` the model as usual, the same
#' script in every process, each with the same data: each process trains on
#' its share of every batch, process 0 alone writes the checkpoints (see
#' [callback_backup_and_restore()]) and every process resumes from them.
#'
#' Every wait for another process is bounded. A process that does not join
#' within `init_timeout` seconds ends the start with an error. Once training
#' runs, a lost process (dead or frozen) ends the others: with an error of
#' class `kerasbackup_peer_lost` where kerasbackup notices it (its own
#' agreements wait at most `timeout` seconds; a collective of the train step
#' fails at once when a process dies), otherwise JAX's coordination service
#' ends the process itself after `2 * timeout` seconds without a heartbeat
#' (at once when process 0 is lost), printing that another task died.
#' Either way, start all processes again: they resume from the last
#' published checkpoint.
#'
#' @param coordinator Address of process 0, `"host:port"`: every process
#'   connects there (process 0 runs JAX's coordination service on it).
#' @param num_processes Number of processes.
#' @param process_id This process' rank, from 0 to `num_processes - 1`
#'   (e.g. `SLURM_PROCID`, or `JOB_COMPLETION_INDEX` on Kubernetes).
#' @param timeout Seconds to wait for another process (also the
#'   environment variable `KERASBACKUP_PEER_TIMEOUT`, default 600).
#' @param init_timeout Seconds to wait for every process to join.
#' @param data_parallel `TRUE` sets Keras' distribution to
#'   `keras.distribution.DataParallel` over every device (each process
#'   feeds its own share of each batch); `FALSE` leaves it to you.
#' @returns `process_id`, invisibly.
#' @family distribution
#' @export
#' @examples
#' \dontrun{
#' library(kerasbackup)
#' use_backend("jax")
#' distribution_initialize("10.0.0.1:12345", num_processes = 2,
#'                         process_id = as.integer(Sys.getenv("SLURM_PROCID")))
#' }
distribution_initialize <- function(coordinator, num_processes, process_id,
                                    timeout = NULL, init_timeout = 300,
                                    data_parallel = TRUE) {
  if (!(is_string(coordinator) && grepl("^[^:]+:[0-9]+$|^\\[[^]]+\\]:[0-9]+$",
                                        coordinator))) {
    abort_invalid_arg("coordinator", coordinator, 'an address "host:port"')
  }
  if (!is_count(num_processes, 1)) {
    abort_invalid_arg("num_processes", num_processes, "a whole number >= 1")
  }
  if (!is_count(process_id, 0, num_processes - 1)) {
    abort_invalid_arg("process_id", process_id,
                      paste0("a whole number from 0 to ", num_processes - 1))
  }
  if (!is.null(timeout) && !(is.numeric(timeout) && length(timeout) == 1L &&
                             !is.na(timeout) && timeout > 0)) {
    abort_invalid_arg("timeout", timeout, "NULL or a positive number of seconds")
  }
  if (!is_count(init_timeout, 1)) {
    abort_invalid_arg("init_timeout", init_timeout, "a whole number of seconds >= 1")
  }
  if (!is_flag(data_parallel)) {
    abort_invalid_arg("data_parallel", data_parallel, "`TRUE` or `FALSE`")
  }
  with_py_errors(py_kb()$initialize_jax(
    coordinator, as.integer(num_processes), as.integer(process_id),
    timeout = timeout, init_timeout = as.integer(init_timeout)
  ))
  if (data_parallel) {
    dist <- py_keras()$distribution
    with_py_errors(dist$set_distribution(dist$DataParallel(auto_shard_dataset = FALSE)))
  }
  invisible(as.integer(process_id))
}
