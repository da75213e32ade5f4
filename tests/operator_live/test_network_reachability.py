"""Who may reach whom: every NetworkPolicy the chart and the operator create, against every pod they create.

The chart is rendered with the real Helm engine (live on, watching `kubetrader` and `trading`);
the operator's policies and pods come from its own builders, configured from the env the chart
gives the operator's Deployment (so the peers they admit are the chart's label helpers). Two
impostors wear the operator's labels: one in another namespace, one in the trading namespace.
The evaluator is tests/kube/network_policy.py (Kubernetes' semantics, default deny once selected).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubetrader.specs import BacktestSpec, OptimizationStudySpec, parse_resource
from kubetrader.specs.live import LiveDeploymentSpec
from kubetrader_operator.backtest.builders import build_job as build_backtest_job
from kubetrader_operator.backtest.builders import job_options
from kubetrader_operator.live.builders import build_children
from kubetrader_operator.live.settings import DEFAULT_GATEWAY_IMAGE, LiveSettings, get_live_settings
from kubetrader_operator.settings import OperatorSettings
from kubetrader_operator.study.builders import build_job as build_study_job
from tests.fixtures.chart import NAMESPACE, RenderedChart
from tests.helpers import EXAMPLES
from tests.kube.network_policy import (
    ContainerPort,
    External,
    Pod,
    allowed_connections,
    namespace_labels,
    pods_from_manifests,
    policies_from_manifests,
)

TRADING = "trading"
IB_SERVER = External("198.51.100.20", (ContainerPort(4000), ContainerPort(4001)))
EXFIL = External("203.0.113.9", (ContainerPort(443), ContainerPort(4001)))
KUBE_DNS = Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, (ContainerPort(53, "UDP"), ContainerPort(53)))


@pytest.fixture
def live_chart(rendered_chart_scenarios: dict[str, RenderedChart]) -> RenderedChart:
    chart = rendered_chart_scenarios["live"]
    assert chart.values["operator"]["watchNamespaces"] == [NAMESPACE, TRADING]
    return chart


@pytest.fixture
def chart_live_settings(live_chart: RenderedChart, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveSettings]:
    """The operator's live settings exactly as the chart's env makes them."""
    operator = live_chart.get("Deployment", "kubetrader-operator")
    env = operator["spec"]["template"]["spec"]["containers"][0]["env"]
    live_env = {
        e["name"]: e["value"] for e in env if e["name"].startswith("KUBETRADER_OPERATOR_LIVE_") and "value" in e
    }
    assert {"KUBETRADER_OPERATOR_LIVE_OPERATOR_POD", "KUBETRADER_OPERATOR_LIVE_API_POD"} <= set(live_env)
    for key, value in live_env.items():
        monkeypatch.setenv(key, value)
    get_live_settings.cache_clear()
    yield get_live_settings()
    get_live_settings.cache_clear()


def operator_children(settings: LiveSettings) -> list[dict[str, Any]]:
    """What the operator creates in `trading`: a paper LiveDeployment, a Backtest Job, a study driver Job."""
    paper = yaml.safe_load((EXAMPLES / "live-paper.yaml").read_text())
    spec = LiveDeploymentSpec.model_validate(paper["spec"])
    live = build_children(
        spec, "sma-paper", TRADING, image="engine:1", gateway_image=settings.allowed_gateway_images[0],
        runner_port=settings.runner_port, token="t", network=settings.network(),
    )  # fmt: skip
    options = job_options(OperatorSettings(image="engine:1"), {})
    backtest = parse_resource(yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())).spec
    study = parse_resource(yaml.safe_load((EXAMPLES / "study-sma.yaml").read_text())).spec
    assert isinstance(backtest, BacktestSpec) and isinstance(study, OptimizationStudySpec)
    return [
        *live,
        build_backtest_job("sma-orcl", TRADING, backtest, options),
        build_study_job("sma-study", TRADING, study, options, redis_url="redis://r:6379/0"),
    ]


def short(pod: Pod) -> str:
    """Chart pods by component; the operator's by what they are."""
    component = pod.labels.get("app.kubernetes.io/component", pod.name)
    if pod.namespace == NAMESPACE and "kubetrader.io/livedeployment" not in pod.labels:
        return component
    return {"backtest": "backtest-job", "study-driver": "study-job"}.get(component, component)


def reachability(live_chart: RenderedChart, settings: LiveSettings) -> dict[str, set[str]]:
    """'destination:port' -> the set of sources that may open a connection to it."""
    children = operator_children(settings)
    documents = [*live_chart.documents, *children]
    policies = policies_from_manifests(documents, NAMESPACE)
    pods = pods_from_manifests(documents, NAMESPACE)
    operator_labels = next(p for p in pods if short(p) == "operator").labels
    impostors = [
        Pod("impostor", "elsewhere", operator_labels),
        Pod("impostor-in-trading", TRADING, operator_labels),
    ]
    namespaces = namespace_labels([NAMESPACE, TRADING, "elsewhere", "kube-system"])
    names = {p.key: short(p) for p in [*pods, KUBE_DNS]} | {
        impostors[0].key: "impostor-elsewhere",
        impostors[1].key: "impostor-in-trading",
        IB_SERVER.key: "ib-server",
        EXFIL.key: "exfil",
    }
    flows = allowed_connections(policies, namespaces, [*pods, *impostors], [*pods, KUBE_DNS, IB_SERVER, EXFIL])
    table: dict[str, set[str]] = {}
    for source, destination, port in flows:
        table.setdefault(f"{names[destination]}:{port}", set()).add(names[source])
    return table


# Pods whose egress is open: the platform's pods that resolve names and reach the Internet (Jobs
# fetch market data, the API and the operator talk to the API server), and the impostors (no policy
# selects them). The data stores, the gateway and the runner reach only what their policy names.
OPEN_EGRESS = {"api", "dashboard", "operator", "worker", "mlflow-migrate", "backtest-job", "study-job", "helm-test"}
IMPOSTORS = {"impostor-elsewhere", "impostor-in-trading"}
ANY_CLIENT = OPEN_EGRESS | IMPOSTORS  # who reaches a port open to every source (a pod never "reaches" itself)

EXPECTED: dict[str, set[str]] = {
    "gateway:4004": {"runner", "operator"},  # the API port (socat relay, paper): never an impostor
    "runner:8080": {"operator", "api"},
    "redis:6379": {"operator", "api", "worker", "backtest-job", "study-job", "helm-test"},
    "postgresql:5432": {"mlflow", "mlflow-migrate", "api", "backtest-job", "study-job"},
    # ClusterIP by default: who logs (mlflow-sync: the runs Backtest Jobs leave for later)
    "mlflow:5000": {"api", "worker", "backtest-job", "study-job", "helm-test", "mlflow-sync"},
    "api:8000": ANY_CLIENT - {"api"},  # a NodePort by default (30800): the API authenticates
    "dashboard:8501": ANY_CLIENT - {"dashboard"},  # the front end
    # operator:9090 and worker:9091 (metrics, served without authentication): no one, without a
    # monitoring.scrapeFrom (tests/chart/test_chart_service_auth.py; with one, the test below)
    "kube-dns:53": ANY_CLIENT | {"mlflow", "mlflow-sync", "gateway", "runner"},
    "ib-server:4000": ANY_CLIENT | {"gateway"},
    "ib-server:4001": ANY_CLIENT | {"gateway"},
    "exfil:443": ANY_CLIENT,  # neither the gateway nor the runner nor a data store
    "exfil:4001": ANY_CLIENT | {"gateway"},  # a public address on IBKR's port: IBKR names hosts, not IPs
}


def test_every_policy_against_every_pod_gives_the_expected_reachability_table(
    live_chart: RenderedChart, chart_live_settings: LiveSettings
) -> None:
    table = reachability(live_chart, chart_live_settings)
    rows = sorted(set(table) | set(EXPECTED))
    differences = {row: (sorted(table.get(row, set())), sorted(EXPECTED.get(row, set()))) for row in rows}
    wrong = {row: d for row, d in differences.items() if d[0] != d[1]}
    assert not wrong, "destination: (allowed, expected)\n" + "\n".join(
        f"{r}: {a} != {e}" for r, (a, e) in wrong.items()
    )


def test_an_impostor_with_the_operators_labels_in_another_namespace_is_refused_and_the_operator_admitted(
    live_chart: RenderedChart, chart_live_settings: LiveSettings
) -> None:
    """#21 finding 4: `namespaceSelector: {}` plus a label admitted any pod of any namespace."""
    table = reachability(live_chart, chart_live_settings)
    for row in ("gateway:4004", "runner:8080", "redis:6379", "postgresql:5432"):
        assert "impostor-elsewhere" not in table[row]
    assert "operator" in table["gateway:4004"] and "impostor-in-trading" not in table["gateway:4004"]


def test_the_default_gateway_image_is_the_charts_first_allowed_image(live_chart: RenderedChart) -> None:
    assert live_chart.values.get("live", {}).get("gateway") is None  # the scenario keeps the chart's default
    from tests.fixtures.chart import CHART_DIR

    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert defaults["live"]["gateway"]["allowedImages"][0] == DEFAULT_GATEWAY_IMAGE


def test_the_chart_gives_the_operator_a_default_backtest_age(chart_live_settings: LiveSettings) -> None:
    """#15: max_backtest_age_days was never set; the chart's default now reaches the operator."""
    assert chart_live_settings.max_backtest_age_days == 90


def test_the_live_runner_pod_monitor_selects_the_runner_pods_the_operator_creates(
    live_chart: RenderedChart, chart_live_settings: LiveSettings
) -> None:
    """A monitor whose labels match no pod scrapes nothing and alerts on nothing: the same trap as a
    NetworkPolicy that selects no pod. Its selector must pick the runner, and only the runner."""
    from tests.fixtures.chart import RenderedChart as Rendered
    from tests.fixtures.chart import parse_manifests, render_chart
    from tests.kube.selectors import matches_label_selector

    values = {**live_chart.values, "monitoring": {"podMonitor": {"enabled": True}, "scrapeFrom": SCRAPE_FROM}}
    templates = render_chart(values)
    monitors = Rendered("live+podMonitor", values, templates, parse_manifests(templates)).of_kind("PodMonitor")
    monitor = next(m for m in monitors if m["metadata"]["name"].endswith("live-runner"))
    selector = monitor["spec"]["selector"]
    pods = pods_from_manifests(operator_children(chart_live_settings), TRADING)
    selected = {p.labels["app.kubernetes.io/component"] for p in pods if matches_label_selector(p.labels, selector)}
    assert selected == {"runner"}
    assert TRADING in monitor["spec"]["namespaceSelector"]["matchNames"]


MONITORING = "monitoring"
PROMETHEUS_LABELS = {"app.kubernetes.io/name": "prometheus"}
SCRAPE_FROM = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING}},
    "podSelector": {"matchLabels": PROMETHEUS_LABELS},
}


def test_prometheus_named_in_scrape_from_reaches_every_metrics_port_and_nothing_else(
    live_chart: RenderedChart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23: the runner's policy admitted only the operator and the API, and the API's (when
    ClusterIP) only its own clients, so no Prometheus could scrape them. With monitoring.scrapeFrom
    the chart's policies and the operator's (from the env the chart gives it) admit the scraper on
    every metrics port: the operator's and the workers' only it, the API's and the runner's it besides
    their clients. Its egress is not ours to limit; what it reaches is what the policies admit."""
    from tests.fixtures.chart import parse_manifests, render_chart

    values = {
        **live_chart.values,
        "api": {"service": {"type": "ClusterIP"}},
        "monitoring": {"scrapeFrom": SCRAPE_FROM},
    }
    documents = parse_manifests(render_chart(values))
    operator = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator"))
    env = {e["name"]: e["value"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    for key, value in env.items():
        if key.startswith("KUBETRADER_OPERATOR_LIVE_"):
            monkeypatch.setenv(key, value)
    get_live_settings.cache_clear()
    try:
        settings = get_live_settings()
    finally:
        get_live_settings.cache_clear()
    assert settings.metrics_scraper is not None
    everything = [*documents, *operator_children(settings)]
    pods = pods_from_manifests(everything, NAMESPACE)
    prometheus = Pod("prometheus", MONITORING, PROMETHEUS_LABELS)
    impostor = Pod("prometheus", "elsewhere", PROMETHEUS_LABELS)  # the labels, in another namespace
    namespaces = namespace_labels([NAMESPACE, TRADING, MONITORING, "elsewhere", "kube-system"])
    flows = allowed_connections(
        policies_from_manifests(everything, NAMESPACE), namespaces, [prometheus, impostor, *pods], pods
    )
    names = {p.key: short(p) for p in pods}
    reached = {f"{names[d]}:{port}" for s, d, port in flows if s == prometheus.key}
    open_to_all = {f"{names[d]}:{port}" for s, d, port in flows if s == impostor.key}
    metrics = {"operator:9090", "worker:9091", "runner:8080", "api:8000"}
    assert reached - open_to_all == metrics  # every metrics port, and nothing another pod could not reach
    assert open_to_all == {"dashboard:8501"}  # the front end, as for any client; no metrics port

    def sources(row: str) -> set[str]:
        return {names.get(s, s) for s, d, p in flows if f"{names[d]}:{p}" == row}

    assert sources("operator:9090") == sources("worker:9091") == {prometheus.key}  # metrics only: the scraper alone
    assert sources("runner:8080") == {"operator", "api", prometheus.key}
    assert sources("api:8000") == {"dashboard", "helm-test", prometheus.key}


def test_without_scrape_from_the_runner_and_a_cluster_ip_api_admit_no_scraper(
    live_chart: RenderedChart, chart_live_settings: LiveSettings
) -> None:
    assert chart_live_settings.metrics_scraper is None
    operator = live_chart.get("Deployment", "kubetrader-operator")
    env = {e["name"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KUBETRADER_OPERATOR_LIVE_METRICS_SCRAPER" not in env


def test_scrape_from_with_one_selector_is_refused() -> None:
    """An empty namespaceSelector admits every namespace: the chart refuses half a peer."""
    import helm_python

    from tests.fixtures.chart import render_chart

    with pytest.raises(helm_python.HelmError, match="scrapeFrom"):
        render_chart({"monitoring": {"scrapeFrom": {"podSelector": {"matchLabels": PROMETHEUS_LABELS}}}})
