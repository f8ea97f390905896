# mypy: disallow-untyped-calls=False
# (prometheus_client's multiprocess helpers are not annotated)
"""prometheus_client's multiprocess mode for funcd's worker processes.

Every worker process writes its samples to memory-mapped files named ``<type>_<pid>.db`` in one
directory; the worker that answers a scrape sums the files of all of them. The directory is private
to one supervisor:

- ``create_directory()`` makes it (in the supervisor, before workers fork) and sets
  ``PROMETHEUS_MULTIPROC_DIR``: prometheus_client reads that variable itself, in every process, to
  decide where its values live, and setting it before the fork is the way its documentation gives.
  The directory is removed when the supervisor exits, or, when a SIGKILL left it, by the next
  supervisor (``functions_framework/runtime/scratch.py``).
- ``retire_worker(directory, pid)`` runs in the supervisor once a worker has exited: the worker's
  counters and histograms are added into ``<type>_archive.db`` (so totals never go down and the
  directory does not grow with every restarted worker), its live gauges are dropped
  (``mark_process_dead``), and its files are removed.
- ``LockedCollector`` reads the directory for a scrape. A scrape holds a shared ``flock`` on
  ``<directory>/.lock`` and ``retire_worker`` an exclusive one, so a scrape sees a retired worker's
  samples exactly once: in its own files or in the archive. Calls never take this lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from functions_framework.runtime.scratch import owned_directory

ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK_FILE = ".lock"
PREFIX = "funcd-metrics-"
ARCHIVE = "archive"
"""The ``<pid>`` part of the files holding what retired workers counted."""


@contextlib.contextmanager
def _locked(directory: str, mode: int) -> Iterator[None]:
    """Hold ``flock(mode)`` on the directory's lock file (a new open file per holder: flock locks
    belong to the open file, so threads sharing one would release each other's)."""
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # releases the lock


def create_directory() -> str:
    """A new private directory for this supervisor's workers (``runtime/scratch.py``: removed when
    the supervisor exits, or by the next one when it was killed), named in
    ``PROMETHEUS_MULTIPROC_DIR``."""
    directory = owned_directory(PREFIX)
    os.environ[ENV] = directory
    return directory


def use_directory() -> None:
    """Make sure this process's metrics are written to the files of the directory its supervisor
    created (inherited ``PROMETHEUS_MULTIPROC_DIR``): prometheus_client picks its value class when
    first imported, which may have happened before the directory was set."""
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def retire_worker(directory: str, pid: int) -> list[str]:
    """Fold an exited worker's files into the archive and remove them. Returns the files removed."""
    suffix = f"_{pid}.db"
    with _locked(directory, fcntl.LOCK_EX):
        files = sorted(glob.glob(os.path.join(directory, f"*{suffix}")))
        for path in files:
            name = os.path.basename(path)
            kind = name.split("_", 1)[0]
            if kind != "gauge":  # counter, histogram, summary: additive, kept in the archive
                _add_into(os.path.join(directory, f"{kind}_{ARCHIVE}.db"), path)
        mark_process_dead(pid, directory)
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    return files


def _add_into(archive: str, path: str) -> None:
    totals: dict[str, float] = {}
    for source in (archive, path):
        if os.path.exists(source):
            for key, value, _, _ in MmapedDict.read_all_values_from_file(source):
                totals[key] = totals.get(key, 0.0) + value
    staging = archive + ".new"  # not *.db: a scrape never reads it
    with contextlib.suppress(FileNotFoundError):
        os.remove(staging)
    out = MmapedDict(staging)
    try:
        for key, value in totals.items():
            out.write_value(key, value, 0.0)
    finally:
        out.close()
    os.replace(staging, archive)


class LockedCollector:
    """Collects every worker's files (``MultiProcessCollector``), under the directory's shared lock."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Any]:
        with _locked(self.directory, fcntl.LOCK_SH):
            files = [f for f in glob.glob(os.path.join(self.directory, "*.db")) if _has_data(f)]
            return list(MultiProcessCollector.merge(files, accumulate=True))


def _has_data(path: str) -> bool:
    """False for a file a starting worker has just created and not yet sized (prometheus_client
    opens it, then extends it): it holds no sample, and reading it would fail the scrape."""
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:
        return False
