"""The study driver's TPE at the cost of its new trials only (issue 17 item 6): MemoizedTPESampler
proposes exactly what Optuna's TPESampler proposes, and the journal storage's cached trial list
returns exactly what Optuna's journal returns, whatever the trials' states and whoever wrote them.
(The cost itself is measured by bench/bench_queue_scale.py, not asserted here.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from kubetrader.optimize.journal import GroupedJournalStorage, write_group
from kubetrader.optimize.samplers import MemoizedTPESampler
from kubetrader.optimize.study import build_sampler, open_storage
from kubetrader.specs.study import SamplerSpec

SPACE = {
    "x": optuna.distributions.IntDistribution(2, 200),
    "y": optuna.distributions.FloatDistribution(1e-3, 10, log=True),
    "step": optuna.distributions.FloatDistribution(0, 1, step=0.25),
    "c": optuna.distributions.CategoricalDistribution(["a", "b", "z"]),
}


def tell(study: optuna.Study, trial: optuna.Trial) -> None:
    """Every kind of trial TPE meets: infeasible ones (constraint violations of several sizes),
    failures, ties, and values that reward two separate regions."""
    p = trial.params
    if p["x"] % 7 == 0:
        trial.set_constraint("c0", 1.0 + p["x"] % 3)
        study.tell(trial, 0.0)
    elif p["x"] % 11 == 0:
        study.tell(trial, state=TrialState.FAIL)
    elif p["x"] % 13 == 0:
        study.tell(trial, -100.0)  # ties
    else:
        peaks = -((p["x"] - 50) ** 2) - (p["y"] - 1) ** 2 + (p["x"] > 150) * 9e3
        study.tell(trial, peaks + (p["c"] == "b") + p["step"])


def proposals(sampler: optuna.samplers.BaseSampler, storage: Any, trials: int, batch: int) -> list[dict[str, Any]]:
    """Trials asked in rounds of `batch` before any is told (the driver's way, so the constant liar
    sees running trials), one enqueued point among them, told in an order other than asked."""
    study = optuna.create_study(study_name="s", storage=storage, sampler=sampler, direction="maximize")
    asked: list[dict[str, Any]] = []
    while len(asked) < trials:
        if len(asked) == 3 * batch:
            study.enqueue_trial({"x": 50, "y": 1.0, "step": 0.5, "c": "b"})
        with write_group(storage):
            round_ = [study.ask(SPACE) for _ in range(batch)]
        asked += [dict(t.params) for t in round_]
        with write_group(storage):
            for trial in reversed(round_):
                tell(study, trial)
    return asked


@pytest.mark.parametrize(
    ("multivariate", "constant_liar", "direction_seed"), [(True, True, 1), (False, True, 2), (True, False, 3)]
)
def test_memoized_tpe_proposes_exactly_the_trials_optunas_tpe_proposes(
    tmp_path: Path, multivariate: bool, constant_liar: bool, direction_seed: int
) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the independent sampler's warning

    def sampler(cls: type[optuna.samplers.TPESampler]) -> optuna.samplers.TPESampler:
        return cls(seed=direction_seed, multivariate=multivariate, constant_liar=constant_liar, n_startup_trials=5)

    theirs = proposals(sampler(optuna.samplers.TPESampler), optuna.storages.InMemoryStorage(), 240, 12)
    ours = proposals(sampler(MemoizedTPESampler), open_storage(f"journal://{tmp_path / 's.log'}"), 240, 12)
    assert len(ours) == 240
    assert ours == theirs
    assert len({tuple(sorted(p.items())) for p in ours}) > 200  # the liar kept the rounds apart


def test_the_drivers_tpe_is_the_memoized_one() -> None:
    assert isinstance(build_sampler(SamplerSpec(type="tpe", seed=1), {}, None), MemoizedTPESampler)


def test_the_cached_trial_list_is_optunas_for_every_state_filter_with_another_writer(tmp_path: Path) -> None:
    """Trials running, failed, waiting (enqueued), finished out of order, and written by another
    process's storage on the same file: after every step, every filter gives the journal's answer."""
    path = tmp_path / "s.log"
    ours = open_storage(f"journal://{path}")
    assert isinstance(ours, GroupedJournalStorage)
    other = open_storage(f"journal://{path}")
    study = optuna.create_study(study_name="s", storage=ours, sampler=optuna.samplers.RandomSampler(seed=1))
    elsewhere = optuna.load_study(study_name="s", storage=other, sampler=optuna.samplers.RandomSampler(seed=2))
    filters: list[Any] = [
        None,
        (TrialState.COMPLETE,),
        (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING),
        (TrialState.WAITING,),
        [TrialState.FAIL, TrialState.RUNNING],
    ]

    def check() -> None:
        truth = JournalStorage(JournalFileBackend(str(path)))
        study_id = truth.get_study_id_from_name("s")
        for states in filters:
            expected = truth.get_all_trials(study_id, states=states)
            for got in (ours.get_all_trials(study_id, states=states), ours.get_all_trials(study_id, False, states)):
                assert [(t.number, t.state, t.value, t.params) for t in got] == [
                    (t.number, t.state, t.value, t.params) for t in expected
                ]

    running = [study.ask(SPACE) for _ in range(6)]
    check()
    study.tell(running[0], 1.0)
    study.tell(running[3], 2.0)  # the lead stops at the still-running trial 1
    study.tell(running[2], state=TrialState.FAIL)
    check()
    far = elsewhere.ask(SPACE)  # another writer's trial, seen by ours on its next read
    study.enqueue_trial({"x": 5})
    check()
    for trial in (running[1], running[4], running[5]):
        study.tell(trial, 3.0)
    check()
    waiting = study.ask(SPACE)  # the enqueued trial starts
    assert waiting.params["x"] == 5
    elsewhere.tell(far, 4.0)
    check()
    study.tell(waiting, state=TrialState.FAIL)
    check()
    deleted = optuna.create_study(study_name="gone", storage=ours)
    gone_id = deleted._study_id
    optuna.delete_study(study_name="gone", storage=ours)
    with pytest.raises(KeyError):
        ours.get_all_trials(gone_id)
