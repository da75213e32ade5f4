"""The study driver's TPE at the cost of its new trials only (issue 17 item 6): MemoizedTPESampler
proposes exactly what Optuna's TPESampler proposes, and the journal storage's cached trial list
returns exactly what Optuna's journal returns, whatever the trials' states and whoever wrote them.
(The cost itself is measured by bench/bench_queue_scale.py, not asserted here.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
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


ROUND_SPACE = {
    "x": optuna.distributions.IntDistribution(2, 200),
    "n": optuna.distributions.IntDistribution(1, 1000, log=True),
    "y": optuna.distributions.FloatDistribution(1e-3, 10, log=True),
    "step": optuna.distributions.FloatDistribution(0, 1, step=0.25),
    "u": optuna.distributions.FloatDistribution(-5, 5),
    "c": optuna.distributions.CategoricalDistribution(["a", "b", "z"]),
}


def round_value(p: dict[str, Any]) -> float:
    return -((p["x"] - 50) ** 2) - (p["y"] - 1) ** 2 - abs(p["u"] - 2) + (p["c"] == "b") + p["step"] - p["n"] / 100


def rounds(
    sampler: optuna.samplers.BaseSampler, storage: Any, trials: int, batch: int, *, conditional: bool = False
) -> list[dict[str, Any]]:
    """The driver's seeded rounds: announce `batch` asks (`expect_asks`, where the sampler has it),
    ask, tell the round in trial order. Inside the rounds what breaks a plan: an infeasible point
    told at once (a COMPLETE trial mid-round), an enqueued trial (no draw of its own), rounds that
    ask fewer trials than announced, and with `conditional` a parameter outside the relative space
    (drawn on its own between two asks' relative draws)."""
    study = optuna.create_study(study_name="r", storage=storage, sampler=sampler, direction="maximize")
    asked: list[dict[str, Any]] = []
    number = 0
    while len(asked) < trials:
        if number == 7:
            study.enqueue_trial({"x": 50, "n": 3, "y": 1.0, "step": 0.5, "u": 2.0, "c": "b"})
        if hasattr(sampler, "expect_asks"):
            sampler.expect_asks(batch)
        round_ = []
        with write_group(storage):
            for position in range(batch - (3 if number % 4 == 3 else 0)):
                trial = study.ask(ROUND_SPACE)
                if conditional and trial.params["c"] == "a":
                    trial.suggest_int("extra", 0, 9)
                asked.append(dict(trial.params))
                if trial.params["x"] % 9 == 0 or position == 5:  # infeasible, told at once
                    trial.set_constraint("c0", 1.0 + trial.params["x"] % 4)
                    study.tell(trial, 0.0)
                else:
                    round_.append(trial)
        with write_group(storage):
            for trial in round_:
                study.tell(trial, round_value(trial.params))
        number += 1
    return asked


@pytest.mark.parametrize(
    ("constant_liar", "conditional", "seed"), [(False, False, 4), (False, True, 5), (True, False, 6), (True, True, 7)]
)
def test_a_round_scored_in_one_call_proposes_exactly_what_optunas_tpe_proposes_ask_by_ask(
    tmp_path: Path, constant_liar: bool, conditional: bool, seed: int
) -> None:
    """Several hundred trials in rounds of 25 over int, log-int, log-float, stepped, plain float
    and categorical parameters: every proposal equals sequential Optuna TPESampler's with the same
    seed, whether the round was planned in one call (no constant liar), its plan broken by the
    events of `rounds`, or asked one by one (the constant liar)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    def sampler(cls: type[optuna.samplers.TPESampler]) -> optuna.samplers.TPESampler:
        return cls(seed=seed, multivariate=True, constant_liar=constant_liar, n_startup_trials=10)

    in_memory = optuna.storages.InMemoryStorage()
    theirs = rounds(sampler(optuna.samplers.TPESampler), in_memory, 400, 25, conditional=conditional)
    ours_sampler = sampler(MemoizedTPESampler)
    scored = count_scoring_calls(ours_sampler)
    ours = rounds(ours_sampler, open_storage(f"journal://{tmp_path / 'r.log'}"), 400, 25, conditional=conditional)
    assert len(ours) >= 400
    assert ours == theirs
    assert len({tuple(sorted(p.items())) for p in ours}) > 350
    if not constant_liar and not conditional:
        # Planned rounds: far fewer scoring calls than asks (one per round, plus one per broken plan).
        assert scored[0] < len(ours) / 4


def count_scoring_calls(sampler: MemoizedTPESampler) -> list[int]:
    calls = [0]
    score = sampler._compute_acquisition_func

    def counted(*args: Any) -> Any:
        calls[0] += 1
        return score(*args)

    sampler._compute_acquisition_func = counted  # type: ignore[method-assign]
    return calls


def test_the_optuna_internals_the_memoized_tpe_overrides_or_calls_are_still_there() -> None:
    """MemoizedTPESampler replaces `_sample` and `_sample_relative` (Optuna calls them from
    `sample_relative` and `sample_independent`) and calls Optuna's protected pieces by name: if a
    release renames or reshapes one, this fails before a study silently takes Optuna's slow path
    or breaks."""
    import inspect

    tpe = optuna.samplers.TPESampler(seed=1)
    for name in ("_sample", "_sample_relative"):
        assert list(inspect.signature(getattr(optuna.samplers.TPESampler, name)).parameters) == [
            "self",
            "study",
            "trial",
            "search_space",
        ]
    assert list(inspect.signature(optuna.samplers.TPESampler._compute_acquisition_func).parameters) == [
        "self",
        "samples",
        "mpe_below",
        "mpe_above",
    ]
    for attribute in ("_constant_liar", "_group", "_gamma", "_n_ei_candidates", "_n_startup_trials", "_rng"):
        assert hasattr(tpe, attribute), attribute
    assert isinstance(tpe._rng.rng, np.random.RandomState)
    assert tpe._parzen_estimator_cls is optuna.samplers._tpe.parzen_estimator._ParzenEstimator
    assert callable(optuna.samplers.TPESampler._compare) and callable(tpe._get_params)


def test_a_study_of_two_objectives_goes_through_optunas_own_tpe_with_the_same_proposals() -> None:
    """A finished trial of two objectives has no single value: the memoized reading (which keeps
    each trial's value) must not touch it, and Optuna's own path proposes as TPESampler does."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    def run(cls: type[optuna.samplers.TPESampler]) -> list[dict[str, Any]]:
        sampler = cls(seed=7, multivariate=True, n_startup_trials=5)
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        asked = []
        for _ in range(12):
            round_ = [study.ask(ROUND_SPACE) for _ in range(4)]
            for trial in round_:
                study.tell(trial, [round_value(trial.params), trial.params["n"]])
            asked += [dict(t.params) for t in round_]
        return asked

    assert run(MemoizedTPESampler) == run(optuna.samplers.TPESampler)


def test_the_driver_announces_its_rounds_and_gets_optunas_tpe_trials_scored_a_round_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the study driver (seeded batches of 25, results back in a shuffled order, a
    constraint whose infeasible points are told inside the round): without the constant liar the
    memoized sampler scores each round in a few calls, and the study's trials are those of the
    same driver on Optuna's own TPESampler."""
    import kubetrader.optimize.study as study_module
    from kubetrader.optimize.study import StudyDriver
    from kubetrader.specs import OptimizationStudySpec
    from tests.optimize.test_reproducible_study import SPEC, ShuffledEvaluator

    spec = OptimizationStudySpec.model_validate(
        {
            **SPEC,
            "constraints": ["slow < 4 * fast"],
            "trials": 200,
            "parallelism": 25,
            "sampler": {"type": "tpe", "seed": 3, "startupTrials": 10, "batchSize": 25, "constantLiar": False},
        }
    )
    built: list[Any] = []
    build = study_module.build_sampler

    def run(name: str) -> list[tuple[str, dict[str, Any]]]:
        driver = StudyDriver(
            spec,
            study_name=name,
            storage_url=f"journal://{tmp_path / (name + '.log')}",
            evaluator=ShuffledEvaluator(25, order_seed=len(built)),
            collect_timeout=0,
        )
        driver.run()
        study = optuna.load_study(study_name=name, storage=open_storage(f"journal://{tmp_path / (name + '.log')}"))
        return [(t.state.name, t.params) for t in study.trials]

    def memoized(*args: Any) -> Any:
        sampler = build(*args)
        built.append((sampler, count_scoring_calls(sampler)))
        return sampler

    monkeypatch.setattr(study_module, "build_sampler", memoized)
    ours = run("ours")
    monkeypatch.setattr(
        study_module,
        "build_sampler",
        lambda *args: optuna.samplers.TPESampler(seed=3, n_startup_trials=10, multivariate=True, constant_liar=False),
    )
    theirs = run("theirs")
    assert ours == theirs
    assert sum(1 for _, params in ours if params["slow"] >= 4 * params["fast"]) > 5  # infeasible, told mid-round
    sampler, scored = built[0]
    assert isinstance(sampler, MemoizedTPESampler)
    assert scored[0] < len(ours) / 4
