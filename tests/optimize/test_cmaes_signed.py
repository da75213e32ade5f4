"""`--sampler cmaes`: it runs and resumes, and its pickled state is signed so a crafted
storage attribute is refused, never unpickled (#21 item 7, #22 item 4).

The payload is the review's (`id` run by the driver), made harmless: it writes `id`'s output
to a marker file under tmp_path, so "never executed" is a file that does not exist.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest

from kubetrader.errors import EXIT_FATAL, SpecError
from kubetrader.optimize import signing
from kubetrader.optimize.evaluation import InProcessEvaluator
from kubetrader.optimize.samplers import StudyStateTamperedError
from kubetrader.optimize.signing import KEY_ENV
from kubetrader.optimize.study import StudyDriver, open_storage
from kubetrader.specs import OptimizationStudySpec
from tests.optimize.test_samplers import BACKTEST, quadratic

KEY = "k" * 32


class _Payload:
    """What an attacker with write access to the storage plants: `id` run by the unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"id > {self.marker}",))


def _spec(trials: int) -> OptimizationStudySpec:
    return OptimizationStudySpec.model_validate(
        {
            "backtest": BACKTEST,
            "space": {"fast": {"type": "int", "low": 5, "high": 30}, "slow": {"type": "int", "low": 10, "high": 35}},
            "trials": trials,
            "sampler": {"type": "cmaes", "seed": 3, "startupTrials": 1},
        }
    )


def _driver(trials: int, storage: str) -> StudyDriver:
    return StudyDriver(
        _spec(trials), study_name="cma", storage_url=storage, evaluator=InProcessEvaluator(run=quadratic)
    )


def _plant(storage: str, chunk: str, prefix: str = "cma:optimizer:") -> None:
    """A finished trial written straight into the storage, carrying `chunk` as the CMA state."""
    study = optuna.load_study(study_name="cma", storage=open_storage(storage))
    last = study.get_trials(deepcopy=False)[-1]
    forged = optuna.trial.create_trial(
        params=last.params,
        distributions=last.distributions,
        value=1e9,
        system_attrs={f"{prefix}0": chunk, "cma:generation": 99},
    )
    study.add_trial(forged)


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def test_a_cmaes_study_runs_to_its_trial_count_with_signed_state_and_resumes(tmp_path: Path, keyed: None) -> None:
    storage = f"journal://{tmp_path / 'cma.log'}"
    assert _driver(20, storage).run().trials_complete == 20  # batches of 8: the state is stored from trial 16
    study = optuna.load_study(study_name="cma", storage=open_storage(storage))
    stored = [t for t in study.get_trials(deepcopy=False) if "cma:optimizer:0" in t.system_attrs]
    assert stored, "a whole CMA-ES generation was told, so the optimizer was stored"
    attrs = stored[-1].system_attrs
    text = "".join(attrs[f"cma:optimizer:{i}"] for i in range(sum(k.startswith("cma:optimizer:") for k in attrs)))
    assert signing.verify(KEY.encode(), bytes.fromhex(text[64:]), text[:64]), "stored as <HMAC><pickle hex>"
    summary = _driver(30, storage).run()  # resumes: restores (and verifies) the stored optimizer
    assert summary.trials_complete == 30 and summary.trials_failed == 0


def test_the_review_payload_in_the_storage_is_refused_and_never_run(tmp_path: Path, keyed: None) -> None:
    storage = f"journal://{tmp_path / 'cma.log'}"
    _driver(8, storage).run()
    marker = tmp_path / "pwned"
    _plant(storage, pickle.dumps(_Payload(marker)).hex())
    with pytest.raises(StudyStateTamperedError) as caught:
        _driver(12, storage).run()
    assert not marker.exists(), "the crafted pickle ran"
    assert "refusing to unpickle" in str(caught.value) and "cma:optimizer:" in str(caught.value)
    assert caught.value.exit_code == EXIT_FATAL


def test_a_payload_signed_with_another_key_is_refused(tmp_path: Path, keyed: None) -> None:
    storage = f"journal://{tmp_path / 'cma.log'}"
    _driver(8, storage).run()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    _plant(storage, signing.sign(b"an attacker's guess at the key", payload) + payload.hex())
    with pytest.raises(StudyStateTamperedError, match="no valid signature"):
        _driver(12, storage).run()
    assert not marker.exists()


def test_without_a_key_cmaes_is_refused_where_the_storage_is_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # in a pod: the data volume is shared
    with pytest.raises(SpecError) as caught:
        _driver(4, f"journal://{tmp_path / 'cma.log'}").run()
    assert caught.value.field == "sampler.type" and KEY_ENV in str(caught.value)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(SpecError, match=KEY_ENV):
        _driver(4, "postgresql://optuna@db.example/optuna").run()


def test_on_one_machine_without_a_key_a_private_user_key_is_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    storage = f"journal://{tmp_path / 'cma.log'}"
    assert _driver(20, storage).run().trials_complete == 20
    key_file = tmp_path / "config" / "kubetrader" / "study-signing.key"
    assert key_file.stat().st_mode & 0o077 == 0
    assert _driver(26, storage).run().trials_complete == 26  # the stored state verified with the same key
