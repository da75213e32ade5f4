"""The driver's progress (counts by state, Optuna's best trial) tallies the leading finished trials
once and is, after every step, what a full scan with Optuna's `best_trial` gives."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from kubetrader.optimize.constraints import parse_constraints
from kubetrader.optimize.space import parse_space
from kubetrader.optimize.study import StudyDriver, StudyProgress, is_infeasible, open_storage, tell_if_infeasible


def full_scan(study: optuna.Study) -> StudyProgress:
    """The progress as the driver computed it before: every trial, then Optuna's best_trial."""
    progress = StudyProgress()
    for t in study.get_trials(deepcopy=False):
        if is_infeasible(t):
            progress.infeasible += 1
        elif t.state == TrialState.COMPLETE:
            progress.done += 1
        elif t.state == TrialState.FAIL:
            progress.failed += 1
        elif t.state == TrialState.RUNNING:
            progress.running += 1
    if progress.done:
        best = study.best_trial
        progress.best_value, progress.best_params = best.value, dict(best.params)
    return progress


@pytest.mark.parametrize(("direction", "journal"), [("maximize", True), ("minimize", False)])
def test_the_tallied_progress_is_a_full_scans_at_every_step(tmp_path: Path, direction: str, journal: bool) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage: Any = open_storage(f"journal://{tmp_path / 'p.log'}") if journal else optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction=direction, sampler=optuna.samplers.RandomSampler(seed=1))
    space = parse_space({"x": {"type": "int", "low": 0, "high": 20}})
    constraints = parse_constraints(["x < 15"], space)
    driver = SimpleNamespace(_progress_lead=None)
    sign = -1.0 if direction == "maximize" else 1.0
    checked = 0
    running: list[optuna.Trial] = []
    for step in range(300):
        trial = study.ask({"x": optuna.distributions.IntDistribution(0, 20)})
        if not tell_if_infeasible(study, trial, constraints):  # infeasible points: value 0, told at once
            running.append(trial)
        if step % 3 == 2:  # results back out of order: the lead stops at a running trial
            for t in (running.pop(1), running.pop(0)) if len(running) > 1 else ():
                x = t.params["x"]
                if x % 7 == 3:
                    study.tell(t, state=TrialState.FAIL)
                else:
                    # Ties, and every feasible value worse than the infeasible points' 0: Optuna's
                    # best trial is then the best feasible one.
                    study.tell(t, sign * (1.0 + x % 5))
        assert StudyDriver._progress(driver, study) == full_scan(study)  # type: ignore[arg-type]
        checked += 1
    assert driver._progress_lead.count > 200  # the lead was tallied, not rescanned
    assert checked == 300
