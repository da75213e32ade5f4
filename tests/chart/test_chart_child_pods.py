"""The pods the operator creates get the chart's scheduling knobs (issue 23): Backtest and study
driver Jobs, a LiveDeployment's gateway and runner.

Table-driven over every builder of an operator-created pod. The chart is rendered with the real
Helm engine; the operator's settings are made from the env the chart gives the operator's
Deployment (KUBETRADER_OPERATOR_POD_SCHEDULING), as in the cluster; each builder's pod template is
checked knob by knob and the workload validated against Kubernetes' own schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubetrader.specs import BacktestSpec, OptimizationStudySpec, parse_resource
from kubetrader.specs.live import LiveDeploymentSpec
from kubetrader_operator.backtest.builders import build_job as build_backtest_job
from kubetrader_operator.backtest.builders import job_options
from kubetrader_operator.live.builders import build_children, build_runner_deployment
from kubetrader_operator.live.settings import LiveSettings
from kubetrader_operator.scheduling import PodScheduling, apply_scheduling
from kubetrader_operator.settings import OperatorSettings
from kubetrader_operator.study.builders import build_job as build_study_job
from tests.fixtures.chart import parse_manifests, render_chart
from tests.helpers import EXAMPLES

KUBERNETES_VERSION = kubernetes_validate.latest_version()
GLOBAL = {
    "nodeSelector": {"kubernetes.io/os": "linux", "pool": "global"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kubetrader", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}}
    ]}},
    "priorityClassName": "platform",
    "podAnnotations": {"example.com/owner": "platform"},
    "podLabels": {"cost-center": "research"},
}  # fmt: skip
CHILD = {
    "nodeSelector": {"pool": "trading"},
    "tolerations": [{"key": "trading", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
    ]}},
    "priorityClassName": "trading-critical",
    "podAnnotations": {"example.com/desk": "equities"},
    # the operator's own labels win: a selector or a NetworkPolicy must keep matching its pods
    "podLabels": {"desk": "equities", "app.kubernetes.io/component": "spoofed"},
    "imagePullSecrets": ["trading-registry"],
}  # fmt: skip


def settings_from_chart(values: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    """OperatorSettings exactly as the chart's env for the operator's Deployment makes them."""
    documents = parse_manifests(render_chart(values))
    operator = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("operator"))
    env = {e["name"]: e["value"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    monkeypatch.setenv("KUBETRADER_OPERATOR_POD_SCHEDULING", env["KUBETRADER_OPERATOR_POD_SCHEDULING"])
    return OperatorSettings(image="engine:1")


def _backtest(settings: OperatorSettings) -> dict[str, Any]:
    spec = parse_resource(yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())).spec
    assert isinstance(spec, BacktestSpec)
    return build_backtest_job("sma-orcl", "trading", spec, job_options(settings, {}))


def _study(settings: OperatorSettings) -> dict[str, Any]:
    spec = parse_resource(yaml.safe_load((EXAMPLES / "study-sma.yaml").read_text())).spec
    assert isinstance(spec, OptimizationStudySpec)
    return build_study_job("sma-study", "trading", spec, job_options(settings, {}), redis_url="redis://r:6379/0")


def _live(kind: str) -> Callable[[OperatorSettings], dict[str, Any]]:
    def build(settings: OperatorSettings) -> dict[str, Any]:
        spec = LiveDeploymentSpec.model_validate(yaml.safe_load((EXAMPLES / "live-paper.yaml").read_text())["spec"])
        live = LiveSettings()
        children = build_children(
            spec, "sma-paper", "trading", image="engine:1", gateway_image=live.allowed_gateway_images[0],
            runner_port=live.runner_port, token="t", network=live.network(), scheduling=settings.pod_scheduling,
        )  # fmt: skip
        return next(c for c in children if c["kind"] == kind)

    return build


def _runner_rollout(settings: OperatorSettings) -> dict[str, Any]:
    """The runner as a spec edit re-rolls it (live.handlers: the template is patched in)."""
    spec = LiveDeploymentSpec.model_validate(yaml.safe_load((EXAMPLES / "live-paper.yaml").read_text())["spec"])
    return build_runner_deployment(
        spec, "sma-paper", "trading", image="engine:1", port=8080, generation=2, scheduling=settings.pod_scheduling
    )


# builder of an operator-created pod -> its own component label (which must survive podLabels)
BUILDERS: dict[str, tuple[Callable[[OperatorSettings], dict[str, Any]], str]] = {
    "backtest job": (_backtest, "backtest"),
    "study driver job": (_study, "study-driver"),
    "live gateway": (_live("StatefulSet"), "gateway"),
    "live runner": (_live("Deployment"), "runner"),
    "live runner rollout": (_runner_rollout, "runner"),
}


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_every_operator_created_pod_gets_the_charts_child_pod_knobs_over_global(
    builder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {"global": GLOBAL, "operator": {"childPods": CHILD}, "images": {"pullSecrets": ["shared-registry"]}}
    build, component = BUILDERS[builder]
    workload = build(settings_from_chart(values, monkeypatch))
    kubernetes_validate.validate(workload, KUBERNETES_VERSION, strict=True)
    template = workload["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "trading"}
    assert pod["tolerations"] == [*GLOBAL["tolerations"], *CHILD["tolerations"]]
    assert pod["affinity"] == CHILD["affinity"]
    assert pod["priorityClassName"] == "trading-critical"
    assert pod["imagePullSecrets"] == [{"name": "shared-registry"}, {"name": "trading-registry"}]
    labels, annotations = template["metadata"]["labels"], template["metadata"]["annotations"]
    assert labels["desk"] == "equities" and labels["cost-center"] == "research"
    assert labels["app.kubernetes.io/component"] == component  # the builder's own label won
    assert annotations["example.com/desk"] == "equities" and annotations["example.com/owner"] == "platform"
    selector = workload["spec"].get("selector", {}).get("matchLabels", {})
    assert all(labels[k] == v for k, v in selector.items())  # a Deployment/StatefulSet still selects its pods


def test_the_mlflow_sync_pod_is_scheduled_exactly_like_the_backtest_jobs_whose_volume_it_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a ReadWriteOnce data volume every pod on it shares a node: the sync loop takes the
    Jobs' knobs (operator.childPods over global), not knobs of its own that could send it elsewhere."""
    values = {"global": GLOBAL, "operator": {"childPods": CHILD}, "images": {"pullSecrets": ["shared-registry"]}}
    documents = parse_manifests(render_chart(values))
    sync = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "kubetrader-mlflow-sync")
    job = _backtest(settings_from_chart(values, monkeypatch))["spec"]["template"]
    fields = ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets")
    assert {f: sync["spec"]["template"]["spec"][f] for f in fields} == {f: job["spec"][f] for f in fields}
    labels = sync["spec"]["template"]["metadata"]["labels"]
    assert labels["desk"] == "equities" and labels["app.kubernetes.io/component"] == "mlflow-sync"


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_global_knobs_alone_reach_the_operator_created_pods(builder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    build, _ = BUILDERS[builder]
    pod = build(settings_from_chart({"global": GLOBAL}, monkeypatch))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == GLOBAL["nodeSelector"] and pod["tolerations"] == GLOBAL["tolerations"]
    assert pod["affinity"] == GLOBAL["affinity"] and pod["priorityClassName"] == "platform"
    assert "imagePullSecrets" not in pod


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_without_knobs_the_operator_created_pods_are_unchanged(builder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's defaults pass an empty scheduling: the pods are exactly what the builders made."""
    build, _ = BUILDERS[builder]
    settings = settings_from_chart({}, monkeypatch)
    assert settings.pod_scheduling == PodScheduling()
    assert build(settings) == build(OperatorSettings(image="engine:1"))


def test_the_child_pod_values_are_checked_by_the_values_schema() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match="childPods"):
        render_chart({"operator": {"childPods": {"nodeSelectr": {"a": "b"}}}})


def test_apply_scheduling_is_pure() -> None:
    template = {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": []}}
    scheduling = PodScheduling.model_validate({"podLabels": {"b": "2"}, "tolerations": [{"key": "k"}]})
    out = apply_scheduling(template, scheduling)
    assert template == {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": []}}
    assert out["metadata"]["labels"] == {"b": "2", "a": "1"} and out["spec"]["tolerations"] == [{"key": "k"}]
