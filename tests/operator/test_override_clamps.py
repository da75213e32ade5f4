"""Override annotations are held to the operator's maximums (#21, low: `backoff-limit: 1000000`
and `memory: 512Gi` once went into the Job as given), said with a warning Event; values that are
no number or quantity are refused naming the annotation."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from kubetrader.specs import BacktestSpec, parse_resource
from kubetrader_operator.backtest.builders import build_job, job_options
from kubetrader_operator.settings import OperatorSettings
from tests.helpers import EXAMPLES, wait_until
from tests.kube.cluster import EmulatedCluster

DOC = yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())
SPEC = parse_resource(DOC).spec
assert isinstance(SPEC, BacktestSpec)
SETTINGS = OperatorSettings(
    image="engine:test", max_cpu="4", max_memory="8Gi", max_backoff_limit=5, max_active_deadline_seconds=86400
)
NS = "research"


def _annotations(**values: str) -> dict[str, str]:
    return {f"kubetrader.io/{key.replace('_', '-')}": value for key, value in values.items()}


def test_values_above_the_maximums_are_clamped_and_each_is_noted() -> None:
    options = job_options(
        SETTINGS, _annotations(backoff_limit="1000000", active_deadline_seconds="99999999", cpu="64", memory="512Gi")
    )
    job = build_job("sma-orcl", NS, SPEC, options)
    assert job["spec"]["backoffLimit"] == 5
    assert job["spec"]["activeDeadlineSeconds"] == 86400
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"] == resources["requests"] == {"cpu": "4", "memory": "8Gi"}
    notes = options.resources.notes
    assert len(notes) == 4
    assert "annotation kubetrader.io/memory: 512Gi is above the operator's maximum 8Gi; clamped to 8Gi" in notes
    assert any("kubetrader.io/backoff-limit: 1000000" in note for note in notes)


def test_values_within_the_maximums_are_kept_without_a_note() -> None:
    options = job_options(SETTINGS, _annotations(backoff_limit="5", cpu="1500m", memory="8192Mi"))
    kept = options.resources
    assert (kept.backoff_limit, kept.cpu_limit, kept.memory_limit, kept.notes) == (5, "1500m", "8192Mi", ())


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("memory", "lots", "is not a Kubernetes quantity"),
        ("cpu", "2 cores", "is not a Kubernetes quantity"),
        ("cpu", "0", "must be above zero"),
        ("memory", "-1Gi", "must be above zero"),
        ("backoff-limit", "many", "is not an integer"),
        ("active-deadline-seconds", "0", "must be at least 1"),
    ],
)
def test_malformed_values_are_refused_naming_the_annotation(key: str, value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=rf"annotation kubetrader\.io/{key}: .*{problem}"):
        job_options(SETTINGS, {f"kubetrader.io/{key}": value})


def test_the_maximums_come_from_the_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETRADER_OPERATOR_MAX_MEMORY", "2Gi")
    monkeypatch.setenv("KUBETRADER_OPERATOR_MAX_BACKOFF_LIMIT", "3")
    settings = OperatorSettings()
    assert (settings.max_memory, settings.max_backoff_limit) == ("2Gi", 3)
    monkeypatch.setenv("KUBETRADER_OPERATOR_MAX_CPU", "eight")
    with pytest.raises(ValueError, match="max_cpu"):
        OperatorSettings()


@pytest.mark.slow
def test_the_operator_says_with_an_event_that_it_clamped_an_override(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any]
) -> None:
    doc = copy.deepcopy(DOC)
    doc["metadata"] = {"name": "sma-orcl", "namespace": NS, "annotations": _annotations(memory="512Gi")}
    with operator_runner():
        kube_cluster.create(doc)
        job = wait_until(lambda: kube_cluster.get("Job", NS, "bt-sma-orcl"), timeout=60, what="the Job")
        events = wait_until(
            lambda: [e for e in kube_cluster.select("Event", NS) if e.get("reason") == "OverrideClamped"],
            timeout=60,
            what="an OverrideClamped event",
        )
    memory = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert memory == OperatorSettings().max_memory
    assert events[0]["type"] == "Warning" and "kubetrader.io/memory: 512Gi" in events[0]["message"]
