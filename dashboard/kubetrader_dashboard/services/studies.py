"""Optimization studies from an Optuna storage: summaries, trials, best-so-far, importance."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kubetrader.optimize.robustness import Robustness
from kubetrader.optimize.study import is_infeasible
from kubetrader_dashboard.models.operations import StudyDetail, StudyList, StudySummary, TrialRow

IMPORTANCE_MIN_TRIALS = 4


class StudyNotFoundError(LookupError):
    pass


class StudyStorageUnavailableError(RuntimeError):
    """The Optuna storage could not be opened or read."""


class StudyService:
    """Studies of one named storage, or (local mode) of every journal file the CLI wrote.

    Locally each study has a journal of its own (`data/optuna/{study}.log`,
    `kubetrader.defaults.journal_url`), so the service opens each file as Optuna's
    JournalStorage with JournalFileBackend (the engine's `open_storage`) and keeps it:
    a journal storage replays only the log lines it has not read yet on each access
    (optuna/storages/journal/_storage.py, `_sync_with_backend`). Reading takes no lock
    (JournalFileBackend.read_logs opens the file read-only), so a running study is not
    slowed down.
    """

    def __init__(self, storage_url: str | None, journal_dir: Path | None = None) -> None:
        self.storage_url = storage_url
        self.journal_dir = journal_dir
        self._storage: Any = None
        self._journals: dict[Path, Any] = {}
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return bool(self.storage_url) or self.journal_dir is not None

    @property
    def missing_reason(self) -> str:
        if self.journal_dir is not None:
            return f"no study journals yet in {self.journal_dir} (kubetrader optimize writes them)"
        return "KUBETRADER_OPTUNA_STORAGE is not set"

    def _open(self, url: str) -> Any:
        import optuna

        from kubetrader.optimize.study import open_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return open_storage(url)

    def storages(self) -> list[Any]:
        """The storage, or one journal storage per local study file (new files picked up on each call)."""
        if self.storage_url:
            if self._storage is None:
                self._storage = self._open(self.storage_url)
            return [self._storage]
        assert self.journal_dir is not None
        from kubetrader import defaults

        with self._lock:
            for path in sorted(self.journal_dir.glob(f"*{defaults.JOURNAL_SUFFIX}")):
                if path not in self._journals:
                    self._journals[path] = self._open(f"{defaults.JOURNAL_SCHEME}{path}")
            for gone in [p for p in self._journals if not p.exists()]:
                del self._journals[gone]
            return list(self._journals.values())

    def _storage_of(self, name: str) -> Any:
        for storage in self.storages():
            if any(s.study_name == name for s in storage.get_all_studies()):
                return storage
        raise StudyNotFoundError(name)

    def ping(self) -> None:
        for storage in self.storages():
            storage.get_all_studies()

    def list_studies(self) -> StudyList:
        if not self.available:
            return StudyList(available=False, reason=self.missing_reason)
        try:
            names = [s.study_name for storage in self.storages() for s in storage.get_all_studies()]
            if not names and not self.storage_url:
                return StudyList(available=True, reason=self.missing_reason)
            return StudyList(items=[self._load(name)[0] for name in names])
        except StudyStorageUnavailableError as exc:
            return StudyList(available=False, reason=str(exc))
        except StudyNotFoundError:
            raise
        except Exception as exc:  # storage drivers raise their own errors; the type only (messages hold URLs)
            return StudyList(available=False, reason=f"Optuna storage unreachable ({type(exc).__name__})")

    def _load(self, name: str) -> tuple[StudySummary, list[TrialRow], list[float | None], Any]:
        import optuna
        from optuna.trial import TrialState

        try:
            study = optuna.load_study(study_name=name, storage=self._storage_of(name))
        except StudyNotFoundError:
            raise
        except KeyError as exc:
            raise StudyNotFoundError(name) from exc
        except Exception as exc:  # drivers raise their own errors; the type only (messages hold URLs)
            raise StudyStorageUnavailableError(f"Optuna storage unreachable ({type(exc).__name__})") from exc
        trials = study.get_trials(deepcopy=False)
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        best: float | None = None
        best_params: dict[str, Any] | None = None
        best_so_far: list[float | None] = []
        rows = []
        for trial in trials:
            infeasible = is_infeasible(trial)  # told COMPLETE with a violated constraint: not an evaluation
            improves = (
                not infeasible
                and trial.value is not None
                and (best is None or (trial.value > best if maximize else trial.value < best))
            )
            if trial.state == TrialState.COMPLETE and improves:
                best, best_params = trial.value, dict(trial.params)
            best_so_far.append(best)
            rows.append(
                TrialRow(
                    number=trial.number,
                    state="INFEASIBLE" if infeasible else trial.state.name,
                    value=None if infeasible else trial.value,
                    params=dict(trial.params),
                    started=trial.datetime_start.isoformat() if trial.datetime_start else None,
                    finished=trial.datetime_complete.isoformat() if trial.datetime_complete else None,
                )
            )
        starts = [t.datetime_start for t in trials if t.datetime_start]
        summary = StudySummary(
            name=study.study_name,
            direction=study.direction.name.lower(),
            trials=len(trials),
            complete=sum(t.state == TrialState.COMPLETE and not is_infeasible(t) for t in trials),
            running=sum(t.state == TrialState.RUNNING for t in trials),
            failed=sum(t.state == TrialState.FAIL for t in trials),
            pruned=sum(t.state == TrialState.PRUNED for t in trials),
            best_value=best,
            best_params=best_params,
            started=min(starts).isoformat() if starts else None,
        )
        return summary, rows, best_so_far, study

    def robustness(self, name: str) -> Robustness:
        """The robustness view of a study (the engine's numbers, kubetrader.optimize.robustness)."""
        from kubetrader.optimize.report import study_robustness

        return study_robustness(self._load(name)[3])

    def detail(self, name: str) -> StudyDetail:
        import optuna

        summary, rows, best_so_far, study = self._load(name)
        importance: dict[str, float] | None = None
        note: str | None = None
        if summary.complete >= IMPORTANCE_MIN_TRIALS:
            try:
                importance = {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
            except (RuntimeError, ValueError) as exc:
                note = f"importance not computable: {exc}"
        else:
            note = f"needs at least {IMPORTANCE_MIN_TRIALS} complete trials"
        return StudyDetail(
            summary=summary, trials=rows, best_so_far=best_so_far, param_importance=importance, importance_note=note
        )
