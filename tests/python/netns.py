"""A network namespace that holds only loopback, for the workers of one test.

TensorFlow's gRPC server listens on every interface ([::]:port) whatever
the address in TF_CONFIG. To keep every socket of a distributed test on
127.0.0.1, the workers of a group join a namespace whose only interface is
loopback: `python netns.py` creates it (unshare), brings `lo` up, prints
"ready" and holds the namespace open until its stdin closes; a worker joins
it with `join(path)` before it opens any socket (and before it starts
threads: setns() moves the calling thread only).
"""

import ctypes
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def join(path):
    """Moves this (still single-threaded) process into the namespace at `path`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc().setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _loopback_up():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, _SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


def main():
    if _libc().unshare(CLONE_NEWNET) != 0:
        print(f"unavailable: unshare: {os.strerror(ctypes.get_errno())}", flush=True)
        return
    try:
        _loopback_up()
    except OSError as e:
        print(f"unavailable: loopback: {e}", flush=True)
        return
    print(f"ready {os.getpid()}", flush=True)
    sys.stdin.read()  # hold the namespace until the test is done with it


if __name__ == "__main__":
    main()
