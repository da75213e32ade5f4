"""Optuna's journal file with group commit: many storage calls, one locked write and one fsync.

Why: `JournalStorage` appends every storage call on its own (`JournalFileBackend.append_logs`
takes the file lock, writes one line and fsyncs). An ask is 3-4 such calls (the trial, each
parameter, TPE's shared relative params) and a tell 2, so a driver handing out trials to 50
workers spent most of its time in fsync: 10 ms per trial with the random sampler on a busy disk.
Inside `GroupedJournalStorage.group()` the appends are kept in memory, served to this process's
reads after the file's lines (so Optuna sees its own writes at once), and written at the end in
one append. The file lock is held for the whole group, so no other writer can slip lines in
between and shift the log numbers; a group must therefore stay well under the lock's grace
period (the driver closes one after ASK_GROUP_SECONDS).

What a crash costs: the appends of an unfinished group, nothing more. The study driver closes
the group of its asks before it submits their tasks, so a restarted driver never meets a task
whose trial is not in the journal; a lost tell leaves its trial RUNNING, and the driver's
recovery tells it from the queue's result (kubetrader.optimize.study).

The backend is Optuna's documented extension point (`optuna.storages.journal.BaseJournalBackend`:
`read_logs` and `append_logs`); reading and locking are Optuna's own `JournalFileBackend` and
lock objects.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Generator, Iterator
from typing import Any

from optuna.storages.journal import (
    BaseJournalBackend,
    JournalFileBackend,
    JournalFileOpenLock,
    JournalFileSymlinkLock,
    JournalStorage,
)

JournalLock = JournalFileSymlinkLock | JournalFileOpenLock


class GroupCommitBackend(BaseJournalBackend):
    """A journal file whose appends can be grouped into one write (see the module docstring)."""

    def __init__(self, path: str, lock: JournalLock) -> None:
        self._path = path
        self._lock = lock
        self._file = JournalFileBackend(path, lock_obj=lock)
        self._known = 0  # logs known to be in the file (a lower bound: others may have appended)
        self._group: list[dict[str, Any]] | None = None
        self._group_start = 0  # logs in the file when the group began (the lock keeps it so)
        self.writes = 0  # locked appends to the file (what grouping saves)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        number = log_number_from
        if self._group is None or log_number_from < self._group_start:
            for log in self._file.read_logs(log_number_from):
                number += 1
                yield log
            self._known = max(self._known, number)
        if self._group is not None:
            yield from self._group[max(0, log_number_from - self._group_start) :]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if self._group is not None:
            self._group.extend(logs)
            return
        self._file.append_logs(logs)
        self.writes += 1

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """Hold the file lock and keep appends in memory; write them in one append at the end
        (also when the block raises: this process has already applied them). Re-entrant."""
        if self._group is not None:
            yield
            return
        self._lock.acquire()
        try:
            for _ in self._file.read_logs(self._known):  # count what other writers appended before
                self._known += 1
            self._group_start = self._known
            self._group = []
            try:
                yield
            finally:
                logs, self._group = self._group, None
                if logs:
                    self._write(logs)
                    # Read our lines back once: Optuna's reader seeks only to offsets it has seen,
                    # and would otherwise re-read the whole file on every later read.
                    self._known = self._group_start + sum(1 for _ in self._file.read_logs(self._group_start))
        finally:
            self._lock.release()

    def _write(self, logs: list[dict[str, Any]]) -> None:
        """What `JournalFileBackend.append_logs` writes, under the lock this group already holds."""
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with open(self._path, "ab") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        self.writes += 1


class GroupedJournalStorage(JournalStorage):
    """`JournalStorage` on a `GroupCommitBackend`, with its `group()` at hand."""

    def __init__(self, backend: GroupCommitBackend) -> None:
        super().__init__(backend)
        self.backend = backend

    def group(self) -> contextlib.AbstractContextManager[None]:
        return self.backend.group()


def write_group(storage: Any) -> contextlib.AbstractContextManager[None]:
    """Group the storage's writes when it can (a journal file); other storages write as they go."""
    if isinstance(storage, GroupedJournalStorage):
        return storage.group()
    return contextlib.nullcontext()
