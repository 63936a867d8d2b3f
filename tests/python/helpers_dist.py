"""Launching groups of dist_worker.py processes: 127.0.0.1 only, every wait bounded.

A Group starts one worker process per rank and waits for states the
workers write (progress counters, results); no wait is unbounded, and a
group that overruns its outer timeout is killed and fails the test with
every worker's log. The workers of a group share a network namespace that
holds only loopback (netns.py) where the system allows one: TensorFlow's
gRPC server listens on every interface whatever TF_CONFIG says. JAX's
coordinator and gloo are bound to 127.0.0.1 explicitly.
"""

import json
import os
import signal
import socket
import subprocess
import time

import helpers_training as ht

NETNS_HOLDER = os.path.join(ht.HERE, "netns.py")

WORKER = os.path.join(ht.HERE, "dist_worker.py")
GROUP_TIMEOUT = 420  # seconds for a whole group, on a loaded 2-core machine
# KERASBACKUP_PEER_TIMEOUT, the TF collective timeout and JAX's heartbeat
# bound: long enough for workers that start a step far apart on a loaded
# machine, short enough for the tests of lost peers.
PEER_TIMEOUT = 30
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


class LoopbackNamespace:
    """A network namespace with only `lo`, held open by a netns.py process."""

    def __init__(self):
        self.holder = subprocess.Popen([ht.PYTHON, NETNS_HOLDER], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline().strip()
        self.path = None
        if line.startswith("ready "):
            self.path = f"/proc/{line.split()[1]}/ns/net"
        else:
            print(f"no network namespace for the workers ({line or 'no answer'}); "
                  "they use the host's, where TensorFlow's server listens on "
                  "every interface")
            self.close()

    def close(self):
        if self.holder.poll() is None:
            self.holder.stdin.close()
            self.holder.wait(timeout=60)


class Group:
    """One launch of `world` workers of `engine` on one backup_dir."""

    def __init__(self, engine, world, backup_dir, events, seed=1, first_run=False,
                 timeout=GROUP_TIMEOUT, peer_timeout=PEER_TIMEOUT, hold=None):
        """`hold=(rank, n)`: that worker waits after its batch n (see `wait_holding`)."""
        os.makedirs(events, exist_ok=True)
        self.engine, self.world, self.events = engine, world, events
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.netns = LoopbackNamespace() if world > 1 else None
        ports = free_ports(world)
        self.procs, self.logs = [], []
        for rank in range(world):
            env = engine_env(engine, world, rank, ports)
            env["KERASBACKUP_PEER_TIMEOUT"] = str(peer_timeout)
            if self.netns is not None and self.netns.path:
                env["KB_TEST_NETNS"] = self.netns.path
            cmd = [ht.PYTHON, WORKER, "--engine", engine, "--rank", str(rank),
                   "--world", str(world), "--port", str(ports[0]),
                   "--backup-dir", backup_dir, "--events", events,
                   "--seed", str(seed), "--timeout", str(peer_timeout)]
            if first_run:
                cmd.append("--first-run")
            if hold is not None and hold[0] == rank:
                cmd += ["--hold-at", str(hold[1])]
            log = os.path.join(events, f"log-{rank}.txt")
            self.logs.append(log)
            with open(log, "w") as f:
                self.procs.append(subprocess.Popen(
                    cmd, env=env, stdout=f, stderr=subprocess.STDOUT))

    def _file(self, name, rank):
        return os.path.join(self.events, f"{name}-{rank}")

    def wait_for(self, predicate, what):
        """Waits until `predicate()` holds, while every worker runs (bounded)."""
        while not predicate():
            if any(p.poll() is not None for p in self.procs):
                self.fail(f"a worker ended before {what}")
            if time.monotonic() > self.deadline:
                self.fail(f"no {what} in time")
            time.sleep(0.01)

    def wait_holding(self, rank):
        """Waits (bounded) until worker `rank` holds after its `hold` batch."""
        self.wait_for(lambda: os.path.exists(self._file("holding", rank)),
                      f"rank {rank} holding")

    def release(self, rank):
        with open(self._file("release", rank), "w"):
            pass

    def send(self, rank, sig):
        self.procs[rank].send_signal(sig)

    def kill(self, rank):
        self.procs[rank].send_signal(signal.SIGKILL)
        self.procs[rank].wait(timeout=60)

    def wait_rank(self, rank):
        """Waits for worker `rank` alone (bounded); returns its exit status."""
        try:
            return self.procs[rank].wait(timeout=max(self.deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            self.fail(f"rank {rank} did not end within {self.timeout} s (a hang)")

    def wait(self):
        """Waits for every worker (bounded); returns their exit codes."""
        for rank in range(self.world):
            self.wait_rank(rank)
        if self.netns is not None:
            self.netns.close()
        return [p.returncode for p in self.procs]

    def assert_loopback_only(self):
        """Every socket the running workers listen on is reachable from loopback only.

        In the group's namespace there is no interface but `lo`; without
        one, each listening address must be a loopback address (TensorFlow
        cannot be told so: reported, not failed).
        """
        for rank, p in enumerate(self.procs):
            interfaces = network_interfaces(p.pid)
            if interfaces == ["lo"]:
                continue
            wild = [a for a in listening(p.pid) if not a[1].startswith("127.")
                    and a[1] not in ("::1", "::ffff:127.0.0.1")]
            if wild and self.engine.startswith("tf"):
                print(f"rank {rank} listens on {wild} (TensorFlow's server; no "
                      "namespace here to keep it on loopback)")
            else:
                assert not wild, f"rank {rank} listens beyond loopback: {wild}"

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


# ------------------------------------------------------------- assertions


def assert_same_final(group, rank, reference, ref_rank=None):
    """Worker `rank` ended exactly as `reference`'s worker (same rank by default)."""
    ref_rank = rank if ref_rank is None else ref_rank
    ht.assert_same_npz(group.final(rank), reference.final(ref_rank))
    assert group.result(rank)["numpy_rng"] == reference.result(ref_rank)["numpy_rng"], \
        f"rank {rank}: its own NumPy generator state differs"


def assert_only_chief_wrote(group, *directories):
    """Rank 0 wrote into each directory and took its lock; the others did nothing there.

    The chief's records are the control: they show that the audit sees the
    store's writes (files opened relative to a directory included).
    """
    chief = group.audit(0)
    for d in directories:
        assert writes_under(chief, d), f"the audit saw no write of the chief in {d}"
    assert any(r[0] == "fcntl.flock" for r in chief), "the chief took no lock"
    for rank in range(1, group.world):
        records = group.audit(rank)
        for d in directories:
            assert not writes_under(records, d), \
                f"rank {rank} wrote into {d}: {writes_under(records, d)[:5]}"
        assert not [r for r in records if r[0] == "fcntl.flock"], f"rank {rank} took a lock"


def assert_lost_peer(group, survivor):
    """The survivor of a lost peer ended with PeerLostError, or (JAX) was ended by JAX.

    JAX's coordination service ends a process itself (SIGABRT) when it
    notices a lost peer before we do, e.g. when the coordinator (rank 0)
    dies; it then prints that another task died.
    """
    code = group.procs[survivor].returncode
    if code == EXIT_PEER_LOST:
        lost = group.result(survivor)
        assert lost["error"] == "PeerLostError", lost
        assert "Stop all workers and start them again" in lost["message"]
        return "PeerLostError"
    with open(group.logs[survivor], errors="replace") as f:
        log = f.read()
    if group.engine.startswith("jax") and code == -6 and \
            "This most likely indicates that another task died" in log:
        return "ended by JAX"
    group.fail(f"rank {survivor} ended with {code}, neither PeerLostError nor "
               "JAX's end for a lost peer")


def network_interfaces(pid):
    with open(f"/proc/{pid}/net/dev") as f:
        return sorted(line.split(":")[0].strip() for line in f.readlines()[2:])


def _address(hex_addr):
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listening(pid):
    """[(protocol, address, port)] of the TCP sockets process `pid` listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for proto in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{proto}") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                    addr, port = parts[1].split(":")
                    found.append((proto, _address(addr), int(port, 16)))
    return found


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


# ------------------------------------------------------------------ flows


def assert_rows(result, rows):
    """The metric `count` accumulators of the checkpoint saved after 3 batches."""
    found = result["replica_rows"]
    assert found["position"] == [0, 3]
    assert found["rows"], "no metric accumulators in the checkpoint"
    for path, got in found["rows"].items():
        assert got == rows, f"{path}: {got}, expected {rows}"


def assert_reference(group, rows, *more_dirs):
    """The 2 workers of a reference run hold one model, each its own generators,
    and only the chief wrote into backup_dir (and `more_dirs`)."""
    ht.assert_same_npz(group.final(0), group.final(1))
    assert group.result(0)["numpy_rng"] != group.result(1)["numpy_rng"]
    assert_rows(group.result(0), rows)
    assert_only_chief_wrote(group, group.backup_dir, *more_dirs)


def kill_and_resume_one_process(engine, tmp_path, rows, steps):
    """One process: an uninterrupted run, then a run killed at a random batch and
    resumed (with another model seed: what it restores must come from backup_dir)."""
    rng = ht.seeded_rng(f"{engine} kill")
    kill_at = rng.randint(4, steps - 2)
    print(f"kill -9 after batch {kill_at}, once a checkpoint is out (the save "
          "after batch 3 or a later one, in flight or published)")
    ref = Group(engine, 1, str(tmp_path / "ref"), str(tmp_path / "ev-ref"), first_run=True)
    ref.expect([0])
    assert_rows(ref.result(0), rows)
    backup = str(tmp_path / "backup")
    crash = Group(engine, 1, backup, str(tmp_path / "ev-crash"), hold=(0, kill_at))
    crash.wait_holding(0)
    crash.wait_for(lambda: ht.latest_checkpoint(backup) is not None, "a checkpoint")
    crash.kill(0)
    resumed = Group(engine, 1, backup, str(tmp_path / "ev-resume"), seed=7)
    resumed.expect([0])
    assert_same_final(resumed, 0, ref)


def reference_run(engine, directory):
    """An uninterrupted 2-worker run (with the first-run checks)."""
    group = Group(engine, 2, str(directory / "backup"), str(directory / "events"),
                  first_run=True, hold=(0, 1))
    group.wait_holding(0)  # both run: rank 1 waits for rank 0's next step
    group.assert_loopback_only()
    group.release(0)
    group.expect([0, 0])
    group.backup_dir = str(directory / "backup")
    return group


def preempt_kill_and_restart(engine, reference, tmp_path):
    """A signal to one worker, then one worker killed, then all restarted: exact.

    Returns how the survivor of the kill ended (see assert_lost_peer).
    """
    rng = ht.seeded_rng(f"{engine} preempt and kill")
    signalled, victim = rng.randrange(2), rng.randrange(2)
    signal_at, kill_at = rng.randint(1, 10), rng.randint(1, 8)
    print(f"SIGTERM to rank {signalled} after its batch {signal_at}; "
          f"kill -9 of rank {victim} after its batch {kill_at} of the resumed run")
    backup = str(tmp_path / "backup")

    # A preemption signal on one worker stops both at the same batch, once
    # the chief has published.
    pre = Group(engine, 2, backup, str(tmp_path / "ev-pre"), hold=(signalled, signal_at))
    pre.wait_holding(signalled)
    pre.send(signalled, signal.SIGTERM)
    pre.release(signalled)
    pre.expect([EXIT_PREEMPTED, EXIT_PREEMPTED])
    stops = [pre.result(r)["preempted"] for r in (0, 1)]
    assert stops[0] == stops[1], stops
    assert ht.latest_checkpoint(backup) == tuple(stops[0])
    assert_only_chief_wrote(pre, backup)

    # A worker killed at any moment: the other one ends, in bounded time.
    crash = Group(engine, 2, backup, str(tmp_path / "ev-crash"), seed=11,
                  hold=(victim, kill_at))
    crash.wait_holding(victim)
    crash.kill(victim)
    crash.wait()
    ended = assert_lost_peer(crash, 1 - victim)

    # Restarting all workers resumes bit-identically, each with its own generators.
    resumed = Group(engine, 2, backup, str(tmp_path / "ev-resume"), seed=13)
    resumed.expect([0, 0])
    for rank in (0, 1):
        assert_same_final(resumed, rank, reference)
    assert_only_chief_wrote(resumed, backup)
    assert not os.path.exists(backup)  # delete_checkpoint, by the chief
    return ended


def frozen_peer(engine, tmp_path, peer_timeout=PEER_TIMEOUT):
    """A worker stopped (SIGSTOP: alive, silent): the other ends within the bound."""
    rng = ht.seeded_rng(f"{engine} frozen peer")
    victim, at = rng.randrange(2), rng.randint(2, 12)
    print(f"SIGSTOP to rank {victim} after its batch {at}; bound {peer_timeout} s")
    group = Group(engine, 2, str(tmp_path / "backup"), str(tmp_path / "events"),
                  peer_timeout=peer_timeout, hold=(victim, at))
    group.wait_holding(victim)
    group.send(victim, signal.SIGSTOP)
    group.release(victim)  # seen only if it were ever continued
    survivor = 1 - victim
    group.wait_rank(survivor)
    group.kill(victim)
    group.wait()
    return assert_lost_peer(group, survivor)
