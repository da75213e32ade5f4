"""Optimization studies from an Optuna storage: summaries, trials, best-so-far, importance."""

from __future__ import annotations

from typing import Any

from kubetrader_dashboard.models.operations import StudyDetail, StudyList, StudySummary, TrialRow

IMPORTANCE_MIN_TRIALS = 4


class StudyNotFoundError(LookupError):
    pass


class StudyStorageUnavailableError(RuntimeError):
    """The Optuna storage could not be opened or read."""


class StudyService:
    def __init__(self, storage_url: str | None) -> None:
        self.storage_url = storage_url
        self._storage: Any = None

    @property
    def available(self) -> bool:
        return bool(self.storage_url)

    def storage(self) -> Any:
        if self._storage is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self._storage = optuna.storages.get_storage(self.storage_url)
        return self._storage

    def ping(self) -> None:
        self.storage().get_all_studies()

    def list_studies(self) -> StudyList:
        if not self.available:
            return StudyList(available=False, reason="KUBETRADER_OPTUNA_STORAGE is not set")
        try:
            names = [s.study_name for s in self.storage().get_all_studies()]
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
            study = optuna.load_study(study_name=name, storage=self.storage())
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
            improves = trial.value is not None and (
                best is None or (trial.value > best if maximize else trial.value < best)
            )
            if trial.state == TrialState.COMPLETE and improves:
                best, best_params = trial.value, dict(trial.params)
            best_so_far.append(best)
            rows.append(
                TrialRow(
                    number=trial.number,
                    state=trial.state.name,
                    value=trial.value,
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
            complete=sum(t.state == TrialState.COMPLETE for t in trials),
            running=sum(t.state == TrialState.RUNNING for t in trials),
            failed=sum(t.state == TrialState.FAIL for t in trials),
            pruned=sum(t.state == TrialState.PRUNED for t in trials),
            best_value=best,
            best_params=best_params,
            started=min(starts).isoformat() if starts else None,
        )
        return summary, rows, best_so_far, study

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
