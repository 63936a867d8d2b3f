"""Joining a cluster before Keras is imported.

jax.distributed must start before anything initialises JAX's backend, and
importing Keras or JAX may (keras3's R package makes a tensor as soon as
either is imported). So this module imports neither Keras nor TensorFlow
until JAX's cluster is up: it holds the peer timeout, the backend Keras will use, and
initialize_jax().
"""

import contextlib
import json
import math
import os
import sys
import threading

DEFAULT_TIMEOUT = 600.0


def peer_timeout():
    """The bound on every wait for another worker, in seconds."""
    raw = os.environ.get("KERASBACKUP_PEER_TIMEOUT")
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(
            "Invalid value for the environment variable "
            "`KERASBACKUP_PEER_TIMEOUT`. Expected a positive number of "
            f"seconds. Received: {raw!r}")
    return value


def keras_backend():
    """The backend Keras runs on, or will once it is imported.

    Keras' own order: its backend once imported, else KERAS_BACKEND, else
    the "backend" of keras.json in KERAS_HOME (default ~/.keras), else
    TensorFlow.
    """
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def initialize_jax(coordinator_address, num_processes, process_id, timeout=None,
                   init_timeout=300, bind_address=None, collectives_host=None):
    """Joins this process to a jax.distributed cluster, with bounded waits.

    What `keras.distribution.initialize()` does, with the bounds it does
    not pass: our agreements wait at most `timeout` seconds (default: the
    peer timeout, `KERASBACKUP_PEER_TIMEOUT`), a peer without heartbeats for
    twice as long counts as lost for JAX (its own default is 100 s), and a
    peer that does not come within `init_timeout` seconds ends the start.
    Then, as Keras does, the processes agree on Keras' random seed.

    Args:
        coordinator_address: "host:port" of process 0's coordination service.
        num_processes, process_id: the number of processes and this one's rank.
        timeout: the bound on waiting for a peer in our agreements; JAX's
            heartbeat bound is twice it, so that our PeerLostError comes
            first where we wait.
        init_timeout: seconds to wait for every process at start-up.
        bind_address: where process 0's coordination service listens
            (default: the coordinator address itself if it is a loopback
            address, else JAX's default, every interface).
        collectives_host: the address the CPU collectives (gloo) listen on
            (default: JAX's, the address of this host's name).

    A peer lost later ends the survivors in bounded time: with a
    PeerLostError when it is noticed in one of our agreements (after
    `timeout`) or by a collective of the train step (a dead peer's closed
    connection, at once). Otherwise JAX's coordination service ends the
    process itself (SIGABRT, after `2 * timeout` without heartbeats, or at
    once when process 0, which runs the service, is gone), printing that
    "another task died": a frozen peer inside a train step, or a lost
    coordinator.
    """
    backend = keras_backend()
    if backend != "jax":
        raise ValueError(
            "initialize_jax() starts jax.distributed for the JAX backend, but "
            f"Keras runs on {backend!r}: choose the backend "
            "first (KERAS_BACKEND=jax; in R, use_backend(\"jax\")).")
    timeout = int(math.ceil(peer_timeout() if timeout is None else float(timeout)))
    host, _, port = str(coordinator_address).rpartition(":")
    if bind_address is None and host in _LOOPBACK:
        bind_address = coordinator_address

    def start():
        import jax

        jax.distributed.initialize(
            coordinator_address=coordinator_address, num_processes=int(num_processes),
            process_id=int(process_id), initialization_timeout=int(init_timeout),
            heartbeat_timeout_seconds=2 * timeout, coordinator_bind_address=bind_address)
        with _gloo_host(collectives_host):
            jax.devices()  # the CPU backend and its collectives start here

    # Under R, reticulate runs the R packages' import hooks after an import
    # on the main thread, and keras3's hook for jax makes a Keras tensor,
    # which starts JAX's backend: jax is first imported, and started, on a
    # thread of its own (the hooks run at the next main-thread import).
    _on_own_thread(start)
    # Keras 3.15.1 (and the 3.16 development tree): the seed agreement of
    # keras.distribution.initialize() has no public name of its own.
    from keras.src.backend.jax.distribution_lib import initialize_rng

    initialize_rng()


def _on_own_thread(fn):
    """Calls fn() on a new thread and waits for it; re-raises its error."""
    outcome = {}

    def run():
        try:
            fn()
        except BaseException as error:  # noqa: B036 (handed to the caller)
            outcome["error"] = error

    thread = threading.Thread(target=run, name="kerasbackup-jax-start", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]


@contextlib.contextmanager
def _gloo_host(host):
    """Makes JAX's gloo collectives listen on `host` while the backend starts.

    jax 0.7.1 creates them with no address (gloo then takes the address of
    the host's name) and has no setting for it; its private factory takes
    one, so it is wrapped for the duration.
    """
    if host is None:
        yield
        return
    from jax._src.lib import xla_client

    xla = xla_client._xla
    original = xla.make_gloo_tcp_collectives

    def make(distributed_client, hostname=None, interface=None):
        return original(distributed_client=distributed_client,
                        hostname=hostname or host, interface=interface)

    xla.make_gloo_tcp_collectives = make
    try:
        yield
    finally:
        xla.make_gloo_tcp_collectives = original
