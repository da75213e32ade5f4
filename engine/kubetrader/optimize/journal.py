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
import copy
import json
import os
from collections.abc import Container, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from optuna.storages.journal import (
    BaseJournalBackend,
    JournalFileBackend,
    JournalFileOpenLock,
    JournalFileSymlinkLock,
    JournalStorage,
)
from optuna.trial import FrozenTrial, TrialState

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


@dataclass
class _FinishedPrefix:
    """A study's leading trials that are all finished (so never change again), filtered per states."""

    count: int = 0
    by_states: dict[frozenset[TrialState] | None, list[FrozenTrial]] = field(default_factory=dict)


class GroupedJournalStorage(JournalStorage):
    """`JournalStorage` on a `GroupCommitBackend`, with its `group()` at hand, whose
    `get_all_trials` does not re-filter the finished trials on every call.

    Why: an ask reads the study's trials three times (the waiting trials, the search space, TPE's
    history) and Optuna's journal filters every trial by state each time, in Python: a fifth of a
    TPE ask at 5,000 trials once the sampler's own per-trial work was gone (MemoizedTPESampler). A
    finished trial never changes (the journal's replay ignores or refuses updates to it,
    `_trial_exists_and_updatable` in optuna/storages/journal/_storage.py) and a study's trials
    are only ever appended, so the longest run of finished trials from the first is filtered once
    and kept; the trials after it (the running ones and what came after) are read afresh on every
    call, so every state is as exact as Optuna's. Uses the replay's protected fields only where
    they have the layout this was checked on (Optuna 5.0); otherwise Optuna's own method.
    """

    def __init__(self, backend: GroupCommitBackend) -> None:
        super().__init__(backend)
        self.backend = backend
        self._finished: dict[int, _FinishedPrefix] = {}

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        replay = self._replay_result
        trial_ids = getattr(replay, "_study_id_to_trial_ids", None)
        trials = getattr(replay, "_trials", None)
        if not isinstance(trial_ids, dict) or not isinstance(trials, dict):
            return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
        key = None if states is None else frozenset(states)  # type: ignore[call-overload]
        with self._thread_lock:
            self._sync_with_backend()
            known = study_id in getattr(replay, "_studies", {})
            found: list[FrozenTrial] = []
            if known:
                found = self._cached_trials(study_id, trial_ids[study_id], trials, key)
        if not known:  # a deleted or unknown study: Optuna's own answer (KeyError), outside our lock
            return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
        return copy.deepcopy(found) if deepcopy else found

    def _cached_trials(
        self,
        study_id: int,
        ids: list[int],
        trials: dict[int, FrozenTrial],
        key: frozenset[TrialState] | None,
    ) -> list[FrozenTrial]:
        """The study's trials in `key`'s states, in trial order: the finished lead as kept, then
        the rest read now."""
        prefix = self._finished.setdefault(study_id, _FinishedPrefix())
        while prefix.count < len(ids) and trials[ids[prefix.count]].state.is_finished():
            trial = trials[ids[prefix.count]]
            for wanted, filtered in prefix.by_states.items():
                if wanted is None or trial.state in wanted:
                    filtered.append(trial)
            prefix.count += 1
        kept = prefix.by_states.get(key)
        if kept is None:
            head = (trials[i] for i in ids[: prefix.count])
            kept = prefix.by_states[key] = [t for t in head if key is None or t.state in key]
        tail = (trials[i] for i in ids[prefix.count :])
        return kept + [t for t in tail if key is None or t.state in key]

    def group(self) -> contextlib.AbstractContextManager[None]:
        return self.backend.group()


def write_group(storage: Any) -> contextlib.AbstractContextManager[None]:
    """Group the storage's writes when it can (a journal file); other storages write as they go."""
    if isinstance(storage, GroupedJournalStorage):
        return storage.group()
    return contextlib.nullcontext()
