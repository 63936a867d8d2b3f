"""Atomic publish on a local file system: staging, publish, trash, clean-up.

A checkpoint is written completely into a private staging directory,
fsynced, and published with one rename, so a process killed at any instant
leaves either the old or the new checkpoint, never a half-written one under
a checkpoint name. Old checkpoints are first renamed to trash names and
deleted only once that rename is durable.

Clean-up removes only what the store writes: the three checkpoint files, as
regular files, in real directories (not symlinks) owned by this user, and
then the directory if it is empty. Anything else stays, and so does the
directory that holds it.

Each step is announced to the phase hook (see `phases`).
"""

import errno
import os
import secrets
import socket
import stat
from dataclasses import dataclass

from kerasbackup.store.fileio import (
    DIR_MODE, DirHandle, create_file, write_file, write_stream)
from kerasbackup.store.format import (
    ARRAYS_NAME, CHECKPOINT_FILES, MANIFEST_NAME, STAGING_PREFIX, STATE_NAME,
    TRASH_PREFIX, build_manifest, checkpoint_name, parse_checkpoint_name)
from kerasbackup.store.phases import phase

# ------------------------------------------------------------------ names


def checkpoint_dirs(directory):
    """[(seq, name)] of the published checkpoints, oldest first.

    Only canonical names that are real directories (not symlinks) count;
    load, prune, delete and backup_info() all list through here.
    """
    found = []
    for name in directory.names():
        seq = parse_checkpoint_name(name)
        if seq is None:
            continue
        try:
            if stat.S_ISDIR(directory.lstat(name).st_mode):
                found.append((seq, name))
        except FileNotFoundError:
            pass  # pruned meanwhile
    found.sort()
    return found


def next_seq(directory, last_seq):
    # Any checkpoint name counts, even a stray file or symlink, so the
    # rename target never exists.
    seqs = [s for s in map(parse_checkpoint_name, directory.names()) if s is not None]
    return max(seqs + [last_seq]) + 1


def _unique(prefix, suffix=""):
    return f"{prefix}{os.getpid()}-{secrets.token_hex(4)}{suffix}"


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class Staged:
    """A complete, synced checkpoint in a staging directory."""

    name: str
    seq: int
    created: str
    size_bytes: int


def write_staging(directory, buffers, total, state_bytes, seq, epoch, batch, crc=None):
    """Writes a whole checkpoint into a new staging directory; returns Staged.

    `crc` is the data's crc32 when the caller has it (see
    format.prepare_arrays()); otherwise it is taken as the data is written.
    On any failure the staging directory is removed and the error raised.
    """
    name = _unique(STAGING_PREFIX)
    os.mkdir(name, DIR_MODE, dir_fd=directory.fd)
    try:
        phase("staging", backup_dir=directory.path, path=directory.join(name))
        with DirHandle.open_in(directory, name) as staging:
            arrays = _write_arrays(staging, buffers, total, directory.path, crc)
            phase("arrays_written", backup_dir=directory.path, path=staging.path)
            files = {ARRAYS_NAME: arrays,
                     STATE_NAME: write_file(STATE_NAME, state_bytes, staging.fd)}
            manifest, created, _ = build_manifest(
                seq, epoch, batch, files,
                writer={"pid": os.getpid(), "host": socket.gethostname()})
            # The manifest goes last: a directory without one is never valid.
            write_file(MANIFEST_NAME, manifest, staging.fd)
            staging.sync()
            phase("manifest_written", backup_dir=directory.path, path=staging.path)
    except BaseException:
        remove_quietly(directory, name)
        raise
    return Staged(name, seq, created,
                  sum(size for size, _ in files.values()) + len(manifest))


def _write_arrays(staging, buffers, total, backup_dir, crc):
    """Writes all array buffers to one file with one fsync; returns (size, crc)."""
    path = staging.join(ARRAYS_NAME)

    def progress(written, total):
        phase("arrays_chunk", backup_dir=backup_dir, path=path,
              written=written, total=total)

    fd = create_file(ARRAYS_NAME, staging.fd)
    try:
        size, taken = write_stream(fd, buffers, progress, checksum=crc is None)
        os.fsync(fd)
    finally:
        os.close(fd)
    return size, (taken if crc is None else crc)


def publish(directory, staged, check):
    """Renames the staging directory to its checkpoint name; returns the name.

    `check()` runs just before the rename and raises if the lock was lost.
    The caller syncs the directory afterwards.
    """
    final = checkpoint_name(staged.seq)
    check()
    os.rename(staged.name, final, src_dir_fd=directory.fd, dst_dir_fd=directory.fd)
    return final


# --------------------------------------------------------------- removing


def trash(directory, names):
    """Renames checkpoint dirs to .trash-* names; returns `(moved, failed)`.

    `moved`: the new names; `failed`: `(name, OSError)` of each one that could
    not be renamed, which does not keep the others from going. The caller
    must sync the directory before deleting any of them, so that a
    half-deleted tree can never come back under a checkpoint name.
    """
    moved, failed = [], []
    for name in names:
        t = _unique(TRASH_PREFIX, f"-{name}")
        try:
            os.rename(name, t, src_dir_fd=directory.fd, dst_dir_fd=directory.fd)
        except OSError as e:
            failed.append((name, e))
            continue
        moved.append(t)
    return moved, failed


def sync_and_remove(directory, names):
    """Makes the renames to trash durable, then removes them (best effort)."""
    try:
        directory.sync()
    except OSError:
        return  # never delete before the rename is durable; open() retries
    for name in names:
        remove_quietly(directory, name)


def remove_leftovers(directory):
    """Removes staging and trash directories left by killed writers (best effort).

    Only call with the lock held, so no live writer owns them.
    """
    for name in directory.names():
        if name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
            remove_quietly(directory, name)


def remove_quietly(directory, name):
    try:
        remove_own_dir(directory, name)
    except OSError:
        pass


def holds_only_ours(directory, name):
    """Whether `name` is a real directory of ours holding only our regular files."""
    try:
        with DirHandle.open_in(directory, name) as sub:
            return os.fstat(sub.fd).st_uid == os.geteuid() and all(
                n in CHECKPOINT_FILES and stat.S_ISREG(sub.lstat(n).st_mode)
                for n in sub.names())
    except OSError:
        return False


def remove_own_dir(directory, name, held=None):
    """Removes checkpoint directory `name` if it holds only what we write.

    Unlinks our three file names where they are regular files, then removes
    the directory if that left it empty. A symlink, a directory owned by
    someone else, and anything else inside are left alone (and so is the
    directory then). With `held` (a fileio.HeldFiles) the big files are kept
    open across their unlink, so that freeing their blocks waits for
    `held.close()`. Returns whether `name` is gone; raises OSError.
    """
    try:
        sub = DirHandle.open_in(directory, name)
    except FileNotFoundError:
        return True
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            return False  # a symlink or a file: not ours
        raise
    with sub:
        if os.fstat(sub.fd).st_uid != os.geteuid():
            return False
        for n in sub.names():
            if n not in CHECKPOINT_FILES:
                continue  # not ours: never even looked at
            st = sub.lstat(n)
            if stat.S_ISREG(st.st_mode):
                if held is not None and st.st_size >= held.MIN_SIZE:
                    held.hold(n, sub.fd)
                os.unlink(n, dir_fd=sub.fd)
    try:
        os.rmdir(name, dir_fd=directory.fd)
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True
