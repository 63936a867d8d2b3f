"""Launching groups of dist_worker.py processes: 127.0.0.1 only, every wait bounded.

A Group starts one worker process per rank and waits for states the
workers write (progress counters, results); no wait is unbounded, and a
group that overruns its outer timeout is killed and fails the test with
every worker's log.
"""

import json
import os
import signal
import socket
import subprocess
import time

import helpers_training as ht

WORKER = os.path.join(ht.HERE, "dist_worker.py")
GROUP_TIMEOUT = 420  # seconds for a whole group, on a loaded 2-core machine
PEER_TIMEOUT = 60  # KERASBACKUP_PEER_TIMEOUT and the TF collective timeout
EXIT_PREEMPTED, EXIT_PEER_LOST = 42, 43  # dist_worker.py's exit statuses


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def engine_env(engine, world, rank, ports):
    env = ht.child_env()
    env.update({
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "",
        "KERASBACKUP_PEER_TIMEOUT": str(PEER_TIMEOUT),
        "PYTHONPATH": ht.HERE + os.pathsep + env["PYTHONPATH"],
    })
    env.pop("TF_CONFIG", None)
    env.pop("KERASBACKUP_KERAS_SHIMS", None)
    if engine.startswith("tf"):
        env["KERAS_BACKEND"] = "tensorflow"
        if engine == "tf-mwms":
            env["TF_CONFIG"] = json.dumps({
                "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                "task": {"type": "worker", "index": rank}})
    else:
        env["KERAS_BACKEND"] = "jax"
        env["JAX_PLATFORMS"] = "cpu"
        env["GLOO_SOCKET_IFNAME"] = "lo"
        env["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=2"
                            if engine == "jax-dp" else "")
    return env


class Group:
    """One launch of `world` workers of `engine` on one backup_dir."""

    def __init__(self, engine, world, backup_dir, events, seed=1, first_run=False,
                 timeout=GROUP_TIMEOUT):
        os.makedirs(events, exist_ok=True)
        self.engine, self.world, self.events = engine, world, events
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        ports = free_ports(world)
        self.procs, self.logs = [], []
        for rank in range(world):
            cmd = [ht.PYTHON, WORKER, "--engine", engine, "--rank", str(rank),
                   "--world", str(world), "--port", str(ports[0]),
                   "--backup-dir", backup_dir, "--events", events,
                   "--seed", str(seed), "--timeout", str(PEER_TIMEOUT)]
            if first_run:
                cmd.append("--first-run")
            log = os.path.join(events, f"log-{rank}.txt")
            self.logs.append(log)
            with open(log, "w") as f:
                self.procs.append(subprocess.Popen(
                    cmd, env=engine_env(engine, world, rank, ports),
                    stdout=f, stderr=subprocess.STDOUT))

    def _file(self, name, rank):
        return os.path.join(self.events, f"{name}-{rank}")

    def progress(self, rank):
        try:
            with open(self._file("progress", rank)) as f:
                return int(json.load(f))
        except (FileNotFoundError, ValueError):
            return 0

    def wait_for(self, predicate, what):
        """Waits until `predicate()` holds, while every worker runs (bounded)."""
        while not predicate():
            if any(p.poll() is not None for p in self.procs):
                self.fail(f"a worker ended before {what}")
            if time.monotonic() > self.deadline:
                self.fail(f"no {what} in time")
            time.sleep(0.01)

    def wait_progress(self, rank, at_least):
        """Waits until worker `rank` has trained `at_least` batches (bounded)."""
        self.wait_for(lambda: self.progress(rank) >= at_least,
                      f"rank {rank} reaching batch {at_least}")

    def send(self, rank, sig):
        self.procs[rank].send_signal(sig)

    def kill(self, rank):
        self.procs[rank].send_signal(signal.SIGKILL)
        self.procs[rank].wait(timeout=60)

    def wait(self):
        """Waits for every worker (bounded); returns their exit codes."""
        for p in self.procs:
            left = self.deadline - time.monotonic()
            try:
                p.wait(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                self.fail(f"the group did not end within {self.timeout} s (a hang)")
        return [p.returncode for p in self.procs]

    def result(self, rank):
        with open(self._file("result", rank) + ".json") as f:
            return json.load(f)

    def audit(self, rank):
        with open(self._file("audit", rank) + ".json") as f:
            return json.load(f)

    def final(self, rank):
        return self._file("final", rank) + ".npz"

    def log_text(self):
        parts = []
        for rank, log in enumerate(self.logs):
            with open(log, errors="replace") as f:
                parts.append(f"--- rank {rank} (exit {self.procs[rank].poll()}) ---\n"
                             + f.read()[-6000:])
        return "\n".join(parts)

    def fail(self, why):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        raise AssertionError(f"{self.engine}: {why}\n{self.log_text()}")

    def expect(self, codes):
        got = self.wait()
        if got != list(codes):
            self.fail(f"exit codes {got}, expected {list(codes)}")
        return got


def writes_under(records, directory):
    """The audit records that wrote into `directory` (or to a name we cannot place)."""
    directory = os.path.realpath(directory)
    hits = []
    for record in records:
        for path in record[1:]:
            if path.startswith("<relative>"):
                hits.append(record)
            elif os.path.realpath(path) == directory or \
                    os.path.realpath(path).startswith(directory + os.sep):
                hits.append(record)
    return hits
