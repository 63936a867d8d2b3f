"""One worker of a distributed training test: trains with kerasbackup.fit().

    python dist_worker.py --engine ENGINE --rank R --world W --backup-dir D --events E

Engines:
  tf-mirrored  one process, tf.distribute.MirroredStrategy over 2 logical CPUs
  tf-mwms      tf.distribute.MultiWorkerMirroredStrategy; TF_CONFIG names the workers
  jax-dp       one process, keras.distribution.DataParallel over 2 host devices
  jax-mp       one process per worker, jax.distributed over gloo on 127.0.0.1

The model and data are helpers_training's (80 samples, 64 for training after
validation_split=0.2, global batch 8: 8 batches an epoch, 3 epochs), saved
every 3 batches in the background, with save_before_preemption. Each worker
seeds NumPy with 1000 + rank and draws from it after every batch, so that
its generator state differs from the others' and must come back per rank.

Files under --events (E), all written atomically:
  progress-R      batches trained by this process so far (after each batch)
  holding-R       with --hold-at N: it stopped after batch N and waits for a
                  file release-R there (the test signals or kills it first)
  result-R.json   how it ended: {"ok": true} / {"preempted": [epoch, batch]}
                  / {"error": class, "message": ...}, plus what it measured
  audit-R.json    every file-system write it made (sys.addaudithook)
  final-R.npz     the final state (weights, optimizer, history, callbacks);
                  the NumPy generator's state goes into result-R.json
Exit status: 0 completed, 42 preempted, 43 PeerLostError, 44 another error.
"""

import os

if os.environ.get("KB_TEST_NETNS"):  # before any socket or thread (helpers_dist.py)
    import netns

    netns.join(os.environ["KB_TEST_NETNS"])

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import helpers_training as ht  # noqa: E402

EXIT = {"ok": 0, "preempted": 42, "peer_lost": 43, "error": 44}


# ------------------------------------------------------------------ audit


class WriteAudit:
    """Records every file-system write of this process (Python's audit events).

    `open` events with a write mode or write flags, and the events of calls
    that change directories or files. Paths given relative to a directory
    fd (the store works that way) are resolved through /proc/self/fd.
    """

    EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate",
              "os.chmod", "os.chown", "os.link", "os.symlink", "os.utime",
              "shutil.rmtree", "fcntl.flock", "os.chflags"}
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def __init__(self):
        self.records = []
        self.busy = False
        sys.addaudithook(self)

    @staticmethod
    def _dir(fd):
        if not isinstance(fd, int) or fd < 0:
            return None
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None

    def _path(self, path, dir_fd=None):
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if isinstance(path, int):
            return self._dir(path) or f"<fd {path}>"
        if not isinstance(path, str):
            return repr(path)
        if os.path.isabs(path):
            return path
        base = self._dir(dir_fd)
        return os.path.join(base, path) if base else f"<relative> {path}"

    def __call__(self, event, args):
        if self.busy:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) \
                or (isinstance(flags, int) and flags & self.WRITE_FLAGS)
            if writing:
                self.records.append(["open", self._path(path)])
        elif event in self.EVENTS:
            if event == "os.rename":
                paths = [self._path(args[0], args[2]), self._path(args[1], args[3])]
            elif event == "fcntl.flock":
                paths = [self._path(args[0])]
            elif event in ("os.mkdir", "os.remove", "os.rmdir"):
                paths = [self._path(args[0], args[-1])]
            else:
                paths = [self._path(args[0])]
            self.records.append([event] + paths)

    def dump(self, path):
        self.busy = True
        write_json(path, self.records)


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def outlive_the_others(args, limit=120.0):
    """Rank 0 waits (bounded) until every other rank has written its result.

    Rank 0 is JAX's coordinator: once it is gone, JAX ends the other
    processes, so a rank 0 that finished first would kill a peer still
    writing its result. A peer that never writes one fails the test anyway.
    """
    others = [os.path.join(args.events, f"result-{r}.json") for r in range(1, args.world)]
    deadline = time.monotonic() + limit
    while not all(os.path.exists(p) for p in others) and time.monotonic() < deadline:
        time.sleep(0.05)


# ---------------------------------------------------------------- engines


def make_engine(args):
    """Sets up the engine; returns (scope factory, strategy or None)."""
    import contextlib

    if args.engine.startswith("tf"):
        import tensorflow as tf

        if args.engine == "tf-mirrored":
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        else:
            options = tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING,
                timeout_seconds=args.timeout)
            strategy = tf.distribute.MultiWorkerMirroredStrategy(
                communication_options=options)
        return strategy.scope, strategy
    import keras

    if args.engine == "jax-mp":
        from kerasbackup.distributed import initialize_jax

        initialize_jax(f"127.0.0.1:{args.port}", args.world, args.rank,
                       timeout=args.timeout, collectives_host="127.0.0.1")
    import jax

    keras.distribution.set_distribution(keras.distribution.DataParallel(
        devices=jax.devices(), auto_shard_dataset=False))
    return contextlib.nullcontext, None


# ------------------------------------------------------------------ checks


def replica_rows(backup_dir):
    """The rows of every metric `count` accumulator in the newest checkpoint."""
    from kerasbackup.store import backup_info, load_published

    newest = backup_info(backup_dir)[-1]
    arrays, meta, _ = load_published(backup_dir, newest["seq"])
    rows = {}
    for i, (path, shape, dtype) in enumerate(meta["variables"].get("metrics", [])):
        if path.endswith("count"):
            rows[path] = np.asarray(arrays[f"metrics/{i:05d}"]).reshape(-1).tolist()
    return {"position": [newest["epoch"], newest["batch"]], "rows": rows}


def tripwire(x, y, scope):
    """Keras' own model.fit under MWMS, without our shims: how it fails (#20585).

    First with no shim (it fails building the model), then with only
    `mwms_symbolic_build` (it fails reducing the scalar logs). A Keras that
    no longer fails is reported as "no error".
    """
    import keras

    from kerasbackup import shims

    found = {}
    for name, others in (("mwms_symbolic_build", ()),
                         ("mwms_scalar_reduce", ("mwms_symbolic_build",))):
        with scope():
            model = ht.make_model(seed=3, dropout=False, schedule=False)
        shims.apply(others)
        try:
            model.fit(x[:16], y[:16], batch_size=8, epochs=1, verbose=0, shuffle=False)
            found[name] = "no error"
        except Exception as e:
            found[name] = f"{type(e).__name__}: {str(e)[:300]}"
        finally:
            shims.remove(others)
        keras.backend.clear_session()
    return found


def plain_fit(x, y, backup_dir, scope):
    """Keras' own model.fit under MWMS with both shims and our callback."""
    import kerasbackup
    from kerasbackup import shims

    with scope():
        model = ht.make_model(seed=5, schedule=False)
    shims.apply()
    try:
        model.fit(x[:32], y[:32], batch_size=8, epochs=2, verbose=0, shuffle=False,
                  callbacks=[kerasbackup.BackupAndRestore(backup_dir, save_freq=2)])
    finally:
        shims.remove()
    return [float(np.sum(np.asarray(v.numpy(), dtype="float64"))) for v in model.weights]


# -------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--engine", required=True,
                   choices=["tf-mirrored", "tf-mwms", "jax-dp", "jax-mp"])
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--world", type=int, default=1)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--backup-dir", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--seed", type=int, default=1,
                   help="model seed: a resumed run uses another, the checkpoint wins")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--hold-at", type=int, default=0,
                   help="after this batch (of this run), wait for the test (holding-R, release-R)")
    p.add_argument("--first-run", action="store_true",
                   help="also check the per-replica rows, the tripwire and a plain model.fit")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.events, exist_ok=True)
    audit = WriteAudit()
    ev = lambda name: os.path.join(args.events, f"{name}-{args.rank}")  # noqa: E731
    result = {"rank": args.rank, "pid": os.getpid()}
    status = "error"
    try:
        status = run(args, result, ev)
    except BaseException as e:  # reported, then the exit status says how it ended
        from kerasbackup.errors import PeerLostError, PreemptedError

        if isinstance(e, PreemptedError):
            status = "preempted"
            result["preempted"] = [e.epoch, e.batch]
        else:
            status = "peer_lost" if isinstance(e, PeerLostError) else "error"
            result["error"] = type(e).__name__
            result["mro"] = [c.__name__ for c in type(e).__mro__]
        result["message"] = str(e)
        import traceback

        traceback.print_exc()
    result["status"] = status
    write_json(ev("result") + ".json", result)
    audit.dump(ev("audit") + ".json")
    if status in ("ok", "preempted") and args.rank == 0:
        outlive_the_others(args)
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave at once: a TF or JAX runtime whose peer is gone may block at exit.
    os._exit(EXIT[status])


def run(args, result, ev):
    scope, strategy = make_engine(args)
    import keras

    import kerasbackup

    x, y = ht.make_data(80)
    if args.first_run and args.engine == "tf-mwms":
        result["tripwire"] = tripwire(x, y, scope)
        result["plain_fit"] = plain_fit(x, y, args.backup_dir + "-plain", scope)

    rank, first_run = args.rank, args.first_run

    class Progress(keras.callbacks.Callback):
        """Reports each batch, draws from this worker's NumPy generator."""

        def __init__(self):
            super().__init__()
            self.count = 0

        def on_train_batch_begin(self, batch, logs=None):
            if first_run and self.count == 4 and rank == 0 and "replica_rows" not in result:
                backup.saver.wait_until_finished()  # the save after batch 3
                result["replica_rows"] = replica_rows(args.backup_dir)

        def on_train_batch_end(self, batch, logs=None):
            np.random.rand()
            self.count += 1
            write_json(ev("progress"), self.count)
            if self.count == args.hold_at:
                # The test acts at this point (a signal, kill -9), however
                # slowly it runs beside a fast worker, then lets it go on.
                write_json(ev("holding"), self.count)
                ht.hold_until(ev("release"))

    with scope():
        model = ht.make_model(seed=args.seed)
    np.random.seed(1000 + rank)  # each worker's own generator state
    siblings = ht.make_callbacks(early_stopping_patience=10, reduce_lr=False)
    backup = kerasbackup.BackupAndRestore(args.backup_dir, save_freq=3,
                                          save_before_preemption=True)
    kerasbackup.fit(model, x, y, batch_size=8, epochs=3,
                    callbacks=[Progress()] + siblings + [backup],
                    validation_split=0.2, shuffle=True, verbose=0)
    ht.snapshot_to_npz(ht.snapshot(model, siblings), ev("final") + ".npz")
    state = np.random.get_state()
    result["numpy_rng"] = [np.asarray(state[1]).tolist(), int(state[2])]
    return "ok"


if __name__ == "__main__":
    main()
