"""moto's S3 server on 127.0.0.1 for the R tests.

Usage: python s3_server.py READY_FILE PARENT_PID BUCKET

Starts the server on a free port, creates BUCKET, then writes READY_FILE
(atomically) holding "<pid> <endpoint>". It runs until it gets SIGTERM or
PARENT_PID (the R session) is gone.
"""

import os
import signal
import socket
import sys
import threading


def main(ready_file, parent_pid, bucket):
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="kb-test-key",
                 aws_secret_access_key="kb-test-secret").create_bucket(Bucket=bucket)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tmp = ready_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()} {endpoint}\n")
    os.replace(tmp, ready_file)
    while not stop.wait(0.5):
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            break
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
