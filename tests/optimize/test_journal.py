"""The study journal's group commit: a driver's round of asks or tells is one locked append, what a
group wrote reaches the file only when it closes, and grouping changes nothing a seeded study does."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import optuna
import pytest

from kubetrader.optimize.journal import GroupedJournalStorage, write_group
from kubetrader.optimize.study import StudyDriver, open_storage
from kubetrader.specs import OptimizationStudySpec
from tests.optimize.test_reproducible_study import SPEC, ShuffledEvaluator

DISTRIBUTIONS = {"x": optuna.distributions.FloatDistribution(0, 1), "n": optuna.distributions.IntDistribution(1, 9)}


def journal(path: Path) -> GroupedJournalStorage:
    storage = open_storage(f"journal://{path}")
    assert isinstance(storage, GroupedJournalStorage)
    return storage


def new_study(storage: Any, name: str = "s") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=1))


def test_a_group_of_asks_and_tells_is_one_append_that_a_fresh_reader_sees_only_once_closed(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    storage = journal(path)
    study = new_study(storage)
    writes = storage.backend.writes
    with write_group(storage):
        trials = [study.ask(DISTRIBUTIONS) for _ in range(20)]
        assert [t.number for t in study.trials] == list(range(20))  # the writer reads its own group
        for trial in trials:
            study.tell(trial, trial.params["x"])
        reader = optuna.load_study(study_name="s", storage=open_storage(f"journal://{path}"))
        assert reader.trials == []  # nothing in the file before the group closes
    assert storage.backend.writes == writes + 1
    reader = optuna.load_study(study_name="s", storage=open_storage(f"journal://{path}"))
    assert [(t.state, t.params, t.value) for t in reader.trials] == [(t.state, t.params, t.value) for t in study.trials]
    assert len(reader.trials) == 20 and reader.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_a_group_that_raises_still_writes_what_optuna_applied(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    storage = journal(path)
    study = new_study(storage)
    with pytest.raises(RuntimeError), write_group(storage):
        study.ask(DISTRIBUTIONS)
        raise RuntimeError("the driver failed mid-round")
    reader = optuna.load_study(study_name="s", storage=open_storage(f"journal://{path}"))
    assert [t.params.keys() for t in reader.trials] == [{"x", "n"}]


def test_another_writer_waits_for_the_group_and_no_log_line_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    ours, theirs = journal(path), journal(path)
    study = new_study(ours, "ours")
    other = new_study(theirs, "theirs")
    other_asked = threading.Event()

    def ask_elsewhere() -> None:
        other.ask(DISTRIBUTIONS)  # blocks on the file lock the group holds
        other_asked.set()

    with write_group(ours):
        study.ask(DISTRIBUTIONS)
        thread = threading.Thread(target=ask_elsewhere)
        thread.start()
        study.ask(DISTRIBUTIONS)
        assert not other_asked.is_set()
    thread.join(30)
    assert other_asked.is_set()
    with write_group(ours):  # our next group starts after their line: the log numbers still agree
        study.ask(DISTRIBUTIONS)
    fresh = open_storage(f"journal://{path}")
    assert len(optuna.load_study(study_name="ours", storage=fresh).trials) == 3
    assert len(optuna.load_study(study_name="theirs", storage=fresh).trials) == 1
    assert len(study.trials) == 3 and len(other.trials) == 1


def test_grouping_changes_nothing_a_seeded_study_proposes(tmp_path: Path) -> None:
    """The same seeded study on the grouped journal and on SQLite (which writes as it goes)."""
    spec = OptimizationStudySpec.model_validate({**SPEC, "parallelism": 4})
    found = []
    for url in (f"journal://{tmp_path / 'a.log'}", f"sqlite:///{tmp_path / 'b.db'}"):
        driver = StudyDriver(
            spec, study_name="same", storage_url=url, evaluator=ShuffledEvaluator(4, 5), collect_timeout=0
        )
        summary = driver.run()
        study = optuna.load_study(study_name="same", storage=open_storage(url))
        found.append(([t.params for t in study.trials], summary.best_value, summary.best_params))
    assert found[0] == found[1]
    assert len(found[0][0]) >= 24


def test_the_driver_writes_the_journal_once_per_round_not_once_per_storage_call(tmp_path: Path) -> None:
    spec = OptimizationStudySpec.model_validate(
        {**SPEC, "trials": 40, "parallelism": 8, "constraints": [], "sampler": {"type": "random", "seed": 3}}
    )
    driver = StudyDriver(
        spec,
        study_name="rounds",
        storage_url=f"journal://{tmp_path / 'r.log'}",
        evaluator=ShuffledEvaluator(8, 1),
        collect_timeout=0,
    )
    summary = driver.run()
    assert summary.trials_complete == 40
    assert isinstance(driver.storage, GroupedJournalStorage)
    # 40 trials ungrouped: 40 x (create, 2 params) + 40 x (metrics, state) = 200 appends.
    # Grouped: one per round of asks and one per round of tells (each round is at least one trial).
    assert driver.storage.backend.writes <= 2 + 2 * 40
    lines = (tmp_path / "r.log").read_text().count("\n")
    assert lines >= 200 and driver.storage.backend.writes < lines / 2


def test_a_seeded_batch_s_first_trials_are_submitted_while_the_rest_are_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one ask per group, the first trial of a batch of 8 reaches the workers when the journal
    holds 1 trial, not after all 8 asks (a TPE ask over thousands of trials takes tens of ms)."""
    import kubetrader.optimize.study as study_module

    monkeypatch.setattr(study_module, "ASK_GROUP_SECONDS", 0.0)
    url = f"journal://{tmp_path / 'p.log'}"
    seen: list[int] = []

    class Watching(ShuffledEvaluator):
        def submit(self, key: str, spec: Any) -> None:
            seen.append(len(optuna.load_study(study_name="pipe", storage=open_storage(url)).trials))
            super().submit(key, spec)

    spec = OptimizationStudySpec.model_validate(
        {**SPEC, "trials": 16, "parallelism": 8, "constraints": [], "sampler": {"type": "random", "seed": 2}}
    )
    summary = StudyDriver(spec, study_name="pipe", storage_url=url, evaluator=Watching(8, 0), collect_timeout=0).run()
    assert summary.trials_complete == 16
    assert seen[:8] == list(range(1, 9))  # each trial submitted as soon as its ask is written
