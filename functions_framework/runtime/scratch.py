"""Private scratch directories of one supervisor and its workers (metrics files, relay sockets).

``owned_directory(prefix)`` makes a new directory (mode 0700) in the temporary folder. The
supervisor (and, through fork, its workers) holds an exclusive ``flock`` on ``<directory>/.owner``
for its whole life, and the directory is removed when the supervisor exits. A directory whose owner
lock can be taken was left by a supervisor killed with SIGKILL; the next ``owned_directory`` with
the same prefix removes it. (The lock, unlike a pid, means the same thing across PID namespaces
that share the folder.)
"""

from __future__ import annotations

import atexit
import fcntl
import glob
import os
import shutil
import tempfile

OWNER_FILE = ".owner"
_owner_locks: list[int] = []
"""File descriptors of the owner locks this process holds (kept open: closing one releases it)."""


def owned_directory(prefix: str) -> str:
    """A new private directory named ``<prefix>...``, removed when this process exits (not when a
    forked child exits). Directories with the same prefix left by killed supervisors are removed."""
    staging = tempfile.mkdtemp(prefix=f".{prefix}")  # not yet under the prefix: no cleaner sees it
    fd = os.open(os.path.join(staging, OWNER_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _owner_locks.append(fd)
    directory = os.path.join(os.path.dirname(staging), os.path.basename(staging)[1:])
    os.rename(staging, directory)  # appears under the prefix already locked
    remove_abandoned(os.path.dirname(directory), prefix)
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # forked children inherit atexit handlers
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    return directory


def remove_abandoned(parent: str, prefix: str) -> list[str]:
    """Remove the directories ``<parent>/<prefix>*`` whose owner lock is free (their supervisor and
    its workers are gone). Returns what was removed."""
    removed = []
    for path in glob.glob(os.path.join(parent, f"{prefix}*")):
        try:
            fd = os.open(os.path.join(path, OWNER_FILE), os.O_RDWR)
        except OSError:  # not ours to judge (no owner file, not a directory, not readable)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # in use
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
        removed.append(path)
    return removed
