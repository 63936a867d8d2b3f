"""Object-store clients: the few primitives the commit protocol needs.

Each client works on the objects below one URL prefix and offers:
`read` (bytes and a version token, in one request), `read_range`, `stat`,
`list`, `create` (only if absent), `replace` (only if the token still
matches: a compare-and-swap), `delete` (optionally conditional) and `upload`
(large objects in parallel parts). A failed condition raises
PreconditionFailed; a missing object FileNotFoundError. Transient errors
(connection refused or reset, timeouts, 5xx, throttling) are retried with a
bounded exponential backoff, then re-raised.

Back ends, over fsspec:
- S3 (`s3://`, s3fs): tokens are ETags; `If-None-Match: *` and `If-Match`;
  large objects as a multipart upload, parts sent concurrently. Endpoint
  and credentials from the AWS chain (`AWS_ENDPOINT_URL`, profiles, ...).
- GCS (`gs://`, gcsfs): tokens are generations; `ifGenerationMatch` on
  multipart uploads (the only upload kind fake-gcs-server checks it on);
  large objects as parts composed into one. `STORAGE_EMULATOR_HOST` is
  honoured (anonymous credentials there unless a token is given).
- `memory://` (fsspec's in-process store, for tests): conditions are
  emulated under a lock, which is exact because nothing outside this
  process can reach it.

Credentials passed in `storage_options` stay inside the file-system object:
they are never part of a message, a repr or anything written.
"""

import concurrent.futures
import hashlib
import os
import re
import threading
import time
from urllib.parse import urlsplit

ENV_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_SECRET_OPTION = re.compile(r"secret|token|password|key|credential", re.I)

DEFAULT_PART_SIZE = 16 * 2**20  # S3 needs >= 5 MiB for all but the last part
DEFAULT_WORKERS = 8


class PreconditionFailed(Exception):
    """A conditional write or delete found the object in another state."""


class UnsupportedURLError(ValueError):
    """The URL's scheme has no client with conditional writes."""


class RetryPolicy:
    """Bounded retries with exponential backoff for transient errors.

    Args:
        attempts: tries in all (>= 1).
        initial, maximum: the first wait and the cap of each wait, seconds.
        sleep: the waiting function (tests pass a fake).
    """

    def __init__(self, attempts=5, initial=0.1, maximum=2.0, sleep=time.sleep):
        if int(attempts) < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts!r}")
        self.attempts = int(attempts)
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.sleep = sleep

    def run(self, fn, is_transient):
        wait = self.initial
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as e:
                if attempt == self.attempts or not is_transient(e):
                    raise
            self.sleep(wait)
            wait = min(wait * 2, self.maximum)


def display_url(url):
    """The URL without user info, query or fragment: safe to show."""
    parts = urlsplit(str(url))
    if not parts.scheme:
        return str(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


def split_url(url):
    """Returns (scheme, bucket, prefix) of an object-store URL; raises ValueError."""
    text = str(url)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if not scheme or "://" not in text:
        raise ValueError(f"not a URL: {display_url(text)!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"backup_dir '{display_url(text)}' has credentials in the URL; pass "
            "them through storage_options or the standard environment instead")
    if parts.query or parts.fragment:
        raise ValueError(
            f"backup_dir '{display_url(text)}' has a query or fragment; "
            "use storage_options for options")
    bucket = parts.netloc
    prefix = parts.path.strip("/")
    if scheme != "memory" and not bucket:
        raise ValueError(f"backup_dir '{display_url(text)}' names no bucket")
    if any(p in (".", "..") for p in prefix.split("/") if p) or "//" in parts.path.strip("/"):
        raise ValueError(f"backup_dir '{display_url(text)}' has an empty, '.' or "
                         "'..' path segment")
    return scheme, bucket, prefix


def scrub(text, storage_options=None):
    """Removes secret-looking option values and AWS secrets from `text`."""
    secrets = [os.environ.get(n) for n in ENV_SECRETS]
    for k, v in _flatten(storage_options or {}):
        if _SECRET_OPTION.search(k):
            secrets.append(v)
    for s in secrets:
        if isinstance(s, str) and len(s) >= 4:
            text = text.replace(s, "***")
    return text


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _status_of(e):
    """HTTP status carried by a client exception or its causes, or None."""
    seen = 0
    while e is not None and seen < 5:
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            code = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code:
                return int(code)
        code = getattr(e, "code", None) or getattr(e, "status", None)
        if isinstance(code, int) and 100 <= code < 600:
            return code
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


_TRANSIENT_NAMES = (
    "EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError",
    "ReadTimeoutError", "ClientConnectorError", "ServerDisconnectedError",
    "ClientOSError", "ClientPayloadError", "FSTimeoutError", "ProxyError",
    "IncompleteRead", "ResponseParserError", "HTTPClientError",
)


def is_transient(e):
    """Whether retrying `e` may succeed (network trouble, 5xx, throttling)."""
    if isinstance(e, (PreconditionFailed, FileNotFoundError, FileExistsError,
                      PermissionError)):
        return False
    status = _status_of(e)
    if status is not None:
        return status >= 500 or status in (408, 429)
    chain, seen = e, 0
    while chain is not None and seen < 5:
        if isinstance(chain, (ConnectionError, TimeoutError)):
            return True
        if any(t.__name__ in _TRANSIENT_NAMES for t in type(chain).__mro__):
            return True
        chain, seen = chain.__cause__ or chain.__context__, seen + 1
    return False


def iter_parts(buffers, part_size):
    """Yields (number, offset, bytes) parts of the concatenated buffers."""
    pending, pending_len, offset, number = [], 0, 0, 1
    for buf in buffers:
        mv = memoryview(buf).cast("B")
        start = 0
        while start < len(mv):
            take = min(part_size - pending_len, len(mv) - start)
            pending.append(mv[start:start + take])
            pending_len += take
            start += take
            if pending_len == part_size:
                yield number, offset, b"".join(pending)
                number, offset = number + 1, offset + pending_len
                pending, pending_len = [], 0
    if pending_len or number == 1:
        yield number, offset, b"".join(pending)


class ObjectClient:
    """Base of the clients; `root` is the prefix all names are relative to."""

    scheme = None

    def __init__(self, fs, bucket, prefix, retry=None, part_size=DEFAULT_PART_SIZE,
                 workers=DEFAULT_WORKERS):
        self.fs = fs
        self.bucket = bucket
        self.prefix = prefix
        self.retry = retry or RetryPolicy()
        self.part_size = int(part_size)
        self.workers = int(workers)

    def path(self, name):
        """fsspec path (bucket/prefix/name) of `name`."""
        return "/".join(p for p in (self.bucket, self.prefix, name) if p)

    def key(self, name):
        """Key of `name` inside the bucket."""
        return "/".join(p for p in (self.prefix, name) if p)

    def with_retries(self, fn):
        """Runs fn() under this client's RetryPolicy (transient errors are retried)."""
        return self.retry.run(fn, is_transient)

    # Shared by the fsspec-backed clients.
    def list(self):
        """Returns {relative name: size} of every object below the prefix."""
        root = self.path("")

        def go():
            self.fs.invalidate_cache()
            try:
                found = self.fs.find(root, detail=True)
            except FileNotFoundError:
                return {}
            return found
        found = self.with_retries(go)
        out = {}
        cut = len(root.rstrip("/")) + 1 if root else 0
        for p, info in found.items():
            if info.get("type", "file") != "file":
                continue
            p = p.lstrip("/")
            out[p[cut:]] = int(info.get("size") or 0)
        return out

    def read_range(self, name, start, end):
        return self.with_retries(lambda: self.fs.cat_file(self.path(name), start=start, end=end))

    def upload(self, name, buffers, total, on_part=None):
        """Writes `name` (must not exist) from the concatenated buffers."""
        data = b"".join(memoryview(b).cast("B") for b in buffers)
        self.create(name, data)
        if on_part is not None:
            on_part(1, 1, total)

    def abort_uploads(self, keep):
        """Aborts unfinished multipart uploads whose names `keep(name)` rejects."""
        return 0

    def close(self):
        pass


class MemoryClient(ObjectClient):
    """fsspec's process-local memory:// store; conditions under one lock."""

    scheme = "memory"
    _lock = threading.RLock()

    def __init__(self, bucket, prefix, retry=None, **kw):
        from fsspec.implementations.memory import MemoryFileSystem
        super().__init__(MemoryFileSystem(), bucket, prefix, retry, **kw)

    @staticmethod
    def _token(data):
        return hashlib.sha256(data).hexdigest()

    def read(self, name):
        with self._lock:
            data = bytes(self.fs.cat_file(self.path(name)))
        return data, self._token(data)

    def stat(self, name):
        with self._lock:
            try:
                data = self.fs.cat_file(self.path(name))
            except FileNotFoundError:
                return None
            return len(data), self._token(data)

    def create(self, name, data):
        data = bytes(data)
        with self._lock:
            if self.fs.exists(self.path(name)):
                raise PreconditionFailed(f"{name} exists")
            self.fs.pipe_file(self.path(name), data)
        return self._token(data)

    def replace(self, name, data, token):
        data = bytes(data)
        with self._lock:
            try:
                current = self.fs.cat_file(self.path(name))
            except FileNotFoundError:
                raise PreconditionFailed(f"{name} is gone") from None
            if self._token(current) != token:
                raise PreconditionFailed(f"{name} changed")
            self.fs.pipe_file(self.path(name), data)
        return self._token(data)

    def delete(self, name, token=None):
        with self._lock:
            try:
                if token is not None and self._token(
                        self.fs.cat_file(self.path(name))) != token:
                    raise PreconditionFailed(f"{name} changed")
                self.fs.rm_file(self.path(name))
            except FileNotFoundError:
                pass


class S3Client(ObjectClient):
    """S3 and S3-compatible servers through s3fs (aiobotocore)."""

    scheme = "s3"

    def __init__(self, bucket, prefix, storage_options, retry=None, **kw):
        import s3fs
        opts = dict(storage_options)
        # We retry ourselves, bounded; the stacked s3fs + botocore retries
        # took 8 s to report a refused connection.
        config = dict(opts.pop("config_kwargs", {}) or {})
        config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
        opts.setdefault("skip_instance_cache", True)
        fs = s3fs.S3FileSystem(config_kwargs=config, **opts)
        fs.retries = 1
        super().__init__(fs, bucket, prefix, retry, **kw)

    def _call(self, method, **kw):
        def go():
            try:
                return self.fs.call_s3(method, Bucket=self.bucket, **kw)
            except Exception as e:
                if _status_of(e) == 412:
                    raise PreconditionFailed(f"{kw.get('Key')}: precondition failed") from e
                raise
        return self.with_retries(go)

    def read(self, name):
        from fsspec.asyn import sync

        def go():
            resp = self.fs.call_s3("get_object", Bucket=self.bucket, Key=self.key(name))
            body = resp["Body"]
            try:
                data = sync(self.fs.loop, body.read)
            finally:
                body.close()
            return data, resp["ETag"]
        return self.with_retries(go)

    def stat(self, name):
        try:
            h = self._call("head_object", Key=self.key(name))
        except FileNotFoundError:
            return None
        return int(h["ContentLength"]), h["ETag"]

    def create(self, name, data):
        return self._call("put_object", Key=self.key(name), Body=bytes(data),
                          IfNoneMatch="*")["ETag"]

    def replace(self, name, data, token):
        try:
            return self._call("put_object", Key=self.key(name), Body=bytes(data),
                              IfMatch=token)["ETag"]
        except FileNotFoundError:
            raise PreconditionFailed(f"{name} is gone") from None

    def delete(self, name, token=None):
        kw = {"IfMatch": token} if token is not None else {}
        try:
            self._call("delete_object", Key=self.key(name), **kw)
        except FileNotFoundError:
            pass

    def upload(self, name, buffers, total, on_part=None):
        if total <= self.part_size:
            return super().upload(name, buffers, total, on_part)
        key = self.key(name)
        upload_id = self._call("create_multipart_upload", Key=key)["UploadId"]
        try:
            etags = {}
            nparts = -(-total // self.part_size)

            def send(number, data):
                return number, len(data), self._call(
                    "upload_part", Key=key, UploadId=upload_id,
                    PartNumber=number, Body=data)["ETag"]
            done = 0
            for number, size, etag in _parallel(
                    send, ((n, d) for n, _, d in iter_parts(buffers, self.part_size)),
                    self.workers):
                etags[number] = etag
                done += size
                if on_part is not None:
                    on_part(len(etags), nparts, done)
            parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
            self._call("complete_multipart_upload", Key=key, UploadId=upload_id,
                       MultipartUpload={"Parts": parts}, IfNoneMatch="*")
        except BaseException:
            try:
                self.fs.call_s3("abort_multipart_upload", Bucket=self.bucket,
                                Key=key, UploadId=upload_id)
            except Exception:
                pass  # collected by abort_uploads() at the next open
            raise

    def abort_uploads(self, keep):
        # With the slash: prefix "run" must not list "run2/..." uploads.
        base = self.key("") + "/" if self.prefix else ""
        resp = self._call("list_multipart_uploads", Prefix=base)
        n = 0
        for u in resp.get("Uploads") or []:
            name = u["Key"][len(base):]
            if u["Key"].startswith(base) and not keep(name):
                try:
                    self._call("abort_multipart_upload", Key=u["Key"],
                               UploadId=u["UploadId"])
                    n += 1
                except FileNotFoundError:
                    pass
        return n


class GCSClient(ObjectClient):
    """Google Cloud Storage and fake-gcs-server through gcsfs's JSON API."""

    scheme = "gs"

    def __init__(self, bucket, prefix, storage_options, retry=None, **kw):
        # The core class: gcsfs's default one (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT)
        # stalls ~60 s a call on gRPC against emulators, and we need no
        # zonal-bucket support.
        from gcsfs.core import GCSFileSystem
        opts = dict(storage_options)
        if os.environ.get("STORAGE_EMULATOR_HOST") and "token" not in opts:
            opts["token"] = "anon"
        opts.setdefault("skip_instance_cache", True)
        fs = GCSFileSystem(**opts)
        # gcsfs retries transient errors itself (6 tries, up to ~30 s in all).
        super().__init__(fs, bucket, prefix, retry or RetryPolicy(attempts=1), **kw)
        self._upload_url = fs.base.replace("/storage/v1/", "/upload/storage/v1/") + "b/{}/o"

    def _cond(self, fn):
        def go():
            try:
                return fn()
            except FileExistsError as e:  # gcsfs's name for any 412
                raise PreconditionFailed(str(e)) from e
        return self.with_retries(go)

    def read(self, name):
        def go():
            headers, data = self.fs.call("GET", "b/{}/o/{}", self.bucket,
                                         self.key(name), alt="media")
            return data, str(headers.get("X-Goog-Generation"))
        return self.with_retries(go)

    def stat(self, name):
        try:
            j = self.with_retries(lambda: self.fs.call("GET", "b/{}/o/{}", self.bucket,
                                               self.key(name), json_out=True))
        except FileNotFoundError:
            return None
        return int(j["size"]), str(j["generation"])

    def _put(self, name, data, generation):
        meta = ('{"name": %s}' % _json_str(self.key(name))).encode()
        body = (b"--==0==\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                + meta + b"\r\n--==0==\r\nContent-Type: application/octet-stream\r\n\r\n"
                + bytes(data) + b"\r\n--==0==--")
        j = self._cond(lambda: self.fs.call(
            "POST", self._upload_url, self.bucket, uploadType="multipart",
            headers={"Content-Type": 'multipart/related; boundary="==0=="'},
            data=body, json_out=True, ifGenerationMatch=str(generation)))
        return str(j["generation"])

    def create(self, name, data):
        return self._put(name, data, 0)

    def replace(self, name, data, token):
        return self._put(name, data, token)

    def delete(self, name, token=None):
        kw = {"ifGenerationMatch": str(token)} if token is not None else {}
        try:
            self._cond(lambda: self.fs.call("DELETE", "b/{}/o/{}", self.bucket,
                                            self.key(name), **kw))
        except FileNotFoundError:
            pass

    def upload(self, name, buffers, total, on_part=None):
        if total <= self.part_size:
            return super().upload(name, buffers, total, on_part)
        # Parallel composite upload: parts as objects, composed (<= 32) into one.
        part_size = max(self.part_size, -(-total // 32))
        nparts = -(-total // part_size)
        names = {}

        def send(number, data):
            part = f"{name}.part-{number:05d}"
            self.create(part, data)
            return number, len(data), part
        try:
            done = 0
            for number, size, part in _parallel(
                    send, ((n, d) for n, _, d in iter_parts(buffers, part_size)),
                    self.workers):
                names[number] = part
                done += size
                if on_part is not None:
                    on_part(len(names), nparts, done)
            sources = [self.path(names[n]) for n in sorted(names)]
            self._cond(lambda: self.fs.merge(self.path(name), sources))
        finally:
            for part in names.values():
                try:
                    self.delete(part)
                except Exception:
                    pass  # under the checkpoint's prefix: collected later


def _json_str(s):
    import json
    return json.dumps(s)


def _parallel(fn, items, workers):
    """Runs fn(*item) on a pool, at most `workers` in flight; yields results."""
    with concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="kerasbackup-upload") as pool:
        pending = set()
        try:
            for item in items:
                pending.add(pool.submit(fn, *item))
                if len(pending) >= workers:
                    done, pending = concurrent.futures.wait(
                        pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for f in done:
                        yield f.result()
            for f in concurrent.futures.as_completed(pending):
                yield f.result()
            pending = set()
        finally:
            for f in pending:
                f.cancel()


_CLIENTS = {"s3": S3Client, "s3a": S3Client, "gs": GCSClient, "gcs": GCSClient}


def check_url(url):
    """Returns (scheme, bucket, prefix) of a URL checkpoints can be kept under.

    Raises UnsupportedURLError for a scheme without conditional writes, and
    ValueError for a malformed URL (messages never show credentials).
    Contacts nothing.
    """
    scheme = urlsplit(str(url)).scheme.lower()
    if scheme != "memory" and scheme not in _CLIENTS:
        raise UnsupportedURLError(
            f"backup_dir '{display_url(url)}': the '{scheme}://' file system has "
            "no conditional writes we can rely on; supported are s3:// (and "
            "S3-compatible servers through AWS_ENDPOINT_URL), gs:// and memory://")
    return split_url(url)


def open_client(url, storage_options=None, retry=None, **kw):
    """Returns the client for `url` (s3://, gs://, memory://); raises ValueError."""
    scheme, bucket, prefix = check_url(url)
    opts = dict(storage_options or {})
    if scheme == "memory":
        if opts:
            raise ValueError("memory:// takes no storage_options")
        return MemoryClient(bucket, prefix, retry, **kw)
    return _CLIENTS[scheme](bucket, prefix, opts, retry, **kw)
