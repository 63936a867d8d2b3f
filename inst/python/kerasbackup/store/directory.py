"""backup_dir itself, on a local file system: which directories the store uses.

A local backup_dir is a path (or a file:// URL), a directory owned by the user
who runs the store and not writable by others unless the sticky bit is set,
and either empty or marked with `.kerasbackup`. The marker is written before
the lock, so a directory holding only a `.lock` is never taken for ours. The
root, $HOME and the working directory (or its ancestors) are never removed.
"""

import json
import os
import pwd
import re
import stat
from urllib.parse import unquote, urlsplit

from kerasbackup.errors import BackupDirError
from kerasbackup.store.fileio import (
    DIR_MODE, DirHandle, ident, open_regular, os_error_text, write_file,
)
from kerasbackup.store.format import FORMAT_VERSION, MARKER_NAME, utc_now

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _text(backup_dir):
    text = os.fspath(backup_dir)
    return os.fsdecode(text) if isinstance(text, bytes) else text


def is_url(backup_dir):
    """Whether backup_dir names an object store: a URL, but not file://."""
    text = _text(backup_dir)
    return bool(_URL_RE.match(text)) and not text.lower().startswith("file://")


def local_path(backup_dir):
    """The absolute path of a local backup_dir (a path or a file:// URL).

    Refuses other URLs: they go to the object store (see the store facade).
    """
    text = _text(backup_dir)
    if text.lower().startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise BackupDirError(
                f"backup_dir '{text}': only file:///path URLs (this host, no query) "
                "name a local directory", text)
        return os.path.abspath(unquote(parts.path))
    if _URL_RE.match(text):
        raise BackupDirError(
            f"backup_dir '{text}' is a URL; the local store takes a directory path "
            "(kerasbackup.store.open_store() picks the object store for URLs).", text)
    return os.path.abspath(text)


def _user(uid):
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def check_owner(path, st):
    """Refuses a directory another user owns or could plant files in."""
    mode = f"mode {stat.S_IMODE(st.st_mode):04o} ({stat.filemode(st.st_mode)})"
    if st.st_uid != os.geteuid():
        raise BackupDirError(
            f"backup_dir '{path}' is owned by {_user(st.st_uid)}, {mode}, not by "
            f"{_user(os.geteuid())} who runs this process. Refusing to use a "
            "directory that another user controls: choose one of your own.", path)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        who = " and ".join(w for bit, w in ((stat.S_IWGRP, "its group"),
                                            (stat.S_IWOTH, "all users"))
                           if st.st_mode & bit)
        raise BackupDirError(
            f"backup_dir '{path}' (owned by {_user(st.st_uid)}, {mode}) is writable "
            f"by {who} without the sticky bit, so another user could plant or "
            f"replace files in it. Refusing to use it: run chmod go-w '{path}' "
            "or choose another directory.", path)


def protected(directory):
    """Why `directory` itself must never be removed, or None.

    The file-system root, $HOME, the working directory and its ancestors.
    """
    def same(p):
        try:
            return ident(os.stat(p)) == directory.ident
        except OSError:
            return False

    if same(os.path.expanduser("~")):
        return "it is the home directory"
    try:
        p = os.getcwd()
    except OSError:
        p = None
    while p:
        if same(p):
            return "it is or contains the working directory"
        parent = os.path.dirname(p)
        p = None if parent == p else parent
    return "it is the root directory" if same("/") else None


def open_backup_dir(d):
    """Creates backup_dir if missing and opens it; refuses one that is not ours.

    Returns a DirHandle; raises BackupDirError.
    """
    try:
        os.makedirs(d, mode=DIR_MODE, exist_ok=True)
    except FileExistsError:
        pass  # a file or a dangling symlink: open() says which
    except OSError as e:
        raise BackupDirError(
            f"cannot create backup_dir '{d}': {os_error_text(e)}", d, e) from e
    try:
        directory = DirHandle.open(d)
    except NotADirectoryError as e:
        raise BackupDirError(
            f"backup_dir '{d}' exists and is not a directory: "
            f"{os_error_text(e)}", d, e) from e
    except OSError as e:
        raise BackupDirError(
            f"cannot access backup_dir '{d}': {os_error_text(e)}", d, e) from e
    try:
        check_owner(d, os.fstat(directory.fd))
    except BaseException:
        directory.close()
        raise
    return directory


def adopt(directory):
    """Refuses foreign content; marks an empty directory as ours (BackupDirError).

    A new marker is not synced here: training would wait for it at the
    start of every fit() into a new directory. The store's first save
    syncs it (sync_marker(), then the directory) before it writes anything
    else. Until then a crash of the machine (not of the process) can lose
    it, and with it only the claim on a directory that holds nothing else
    it wrote durably.
    """
    d = directory.path
    try:
        names = directory.names()
        if MARKER_NAME in names:
            st = directory.lstat(MARKER_NAME)
            if not stat.S_ISREG(st.st_mode):
                raise BackupDirError(
                    f"backup_dir '{d}': its marker '{MARKER_NAME}' is not a "
                    "regular file; kerasbackup did not write it. Refusing to "
                    "use the directory: choose another one.", d)
            return
        if names:
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            raise BackupDirError(
                f"backup_dir '{d}' is not empty and was not created by "
                f"kerasbackup (no {MARKER_NAME} marker; it contains {shown}). "
                "Refusing to write into it: choose a new or empty directory.", d)
        # The marker comes before the lock, so that a directory holding
        # only a `.lock` is never ours.
        try:
            write_file(MARKER_NAME, json.dumps(
                {"kerasbackup": True, "format_version": FORMAT_VERSION,
                 "created": utc_now()}).encode(), directory.fd, sync=False)
        except FileExistsError:
            return adopt(directory)  # another store was quicker
    except OSError as e:
        raise BackupDirError(
            f"cannot use backup_dir '{d}': {os_error_text(e)}", d, e) from e


def sync_marker(directory):
    """fsyncs the marker's content (OSError, NotRegularFileError for
    anything but a regular file). Its name becomes durable with the next
    sync of `directory`.
    """
    fd, _ = open_regular(MARKER_NAME, directory.fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
