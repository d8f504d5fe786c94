"""Process liveness and exclusive file locks, shared by everything that leaves per-process files behind or must not
run twice on one directory."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path


class Busy(Exception):
    """Another process holds the lock; ``holders`` describes it (pid, host, mode, since) as far as it is known."""

    def __init__(self, lock_file: Path, holders: str):
        self.lock_file = lock_file
        self.holders = holders
        super().__init__(f"{lock_file} is held by {holders}")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, though not ours
    with contextlib.suppress(OSError, IndexError):  # without procfs, the signal check is all there is
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def open_own(path: Path, flags: int = 0, mode: int = 0o644) -> int:
    """A descriptor (read-write, created if missing) of ``path`` that is a regular file of ours: a symlink planted
    at its name is refused (``O_NOFOLLOW``), as is a file another user owns, rather than truncating or writing
    through it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symbolic link is where a file of ours should be; refused", str(path)) from exc
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise OSError(errno.EPERM, "not a regular file of this user's; refused", str(path))
    return fd


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if missing) for the block; waits for other holders."""
    with os.fdopen(open_own(lock_file), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def held(lock_file: Path, shared: bool = False, wait: bool = False) -> Iterator[None]:
    """Hold an ``flock`` on ``lock_file`` (created if missing) for the block: exclusive, or ``shared`` with other
    shared holders. Without ``wait``, raises :class:`Busy` naming the holder(s) when it is taken; with it, waits.

    Each holder appends one JSON line (pid, host, mode, since) to the file; an exclusive holder first empties it,
    so the file names the current holders and, after they are gone, the last ones. The file is never deleted:
    removing a lock file while another process has it open would let two processes lock two different files.
    """
    with os.fdopen(open_own(lock_file, os.O_APPEND), "r+") as handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise Busy(lock_file, _holders(handle.read())) from None
        try:
            if not shared:
                handle.truncate(0)
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "mode": "shared" if shared else "exclusive",
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holders(text: str) -> str:
    """The records of a lock file as a phrase: the live ones on this host and those of other hosts, else the last."""
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
            record = json.loads(line)
            records.append((int(record["pid"]), str(record["host"]), str(record["mode"]), str(record["since"])))
    here = socket.gethostname()
    live = [r for r in records if r[1] != here or pid_alive(r[0])] or records[-1:]
    if not live:
        return "another process (it has not recorded itself yet)"
    return "; ".join(f"pid {pid} on host {host} ({mode}, since {since})" for pid, host, mode, since in live[-3:])
