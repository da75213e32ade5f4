"""The chart renders with the real Helm engine, lints clean, and every manifest is valid Kubernetes.

Each ci/ scenario is rendered once per session (`rendered_chart_scenarios`); the CRDs come from
the repository's crds/ through the chart's crds symlink, never from a second copy.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from tests.fixtures.chart import CHART_DIR, NAMESPACE, ROOT, RenderedChart, chart_scenarios, render_chart

SCENARIOS = chart_scenarios()
KUBERNETES_VERSION = kubernetes_validate.latest_version()
# Kinds of other projects' CRDs: kubernetes-validate ships only Kubernetes' own schemas.
# (The Prometheus Operator's kinds are validated against its CRDs in test_chart_monitoring.py.)
FOREIGN_KINDS = {
    "ScaledObject": "keda.sh/v1alpha1",
    "TriggerAuthentication": "keda.sh/v1alpha1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
}


def test_every_expected_scenario_has_a_values_file() -> None:
    assert set(SCENARIOS) >= {"default", "external", "keda", "live"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chart_lints_clean_in_strict_mode(scenario: str) -> None:
    values = yaml.safe_load((CHART_DIR / "ci" / f"{scenario}-values.yaml").read_text())
    report = helm_python.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [], report
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_manifests_validate_against_kubernetes_schemas_strictly(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    rendered = rendered_chart_scenarios[scenario]
    assert len(rendered.documents) > 10
    for doc in rendered.documents:
        if doc["kind"] in FOREIGN_KINDS:
            assert doc["apiVersion"] == FOREIGN_KINDS[doc["kind"]]
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{scenario}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_object_names_are_unique_per_kind_and_namespace(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    keys = [
        (d["kind"], d["metadata"].get("namespace", NAMESPACE), d["metadata"]["name"])
        for d in rendered_chart_scenarios[scenario].documents
    ]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_a_value_the_schema_does_not_know_fails_the_render_naming_it() -> None:
    with pytest.raises(helm_python.HelmValuesError, match=r"(?s)/worker.*additional properties 'replica' not allowed"):
        render_chart({"worker": {"replica": 3}})


def test_a_misspelt_top_level_key_fails_the_render() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="additional properties 'mlfow' not allowed"):
        render_chart({"mlfow": {"enabled": False}})


def test_external_redis_without_a_url_is_refused_by_the_schema() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="/redis/external/url"):
        render_chart({"redis": {"enabled": False}})


def test_external_postgresql_without_host_is_refused_by_the_schema() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="/postgresql/external"):
        render_chart({"postgresql": {"enabled": False}})


def _schema_nodes(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            found.append((path, node))
        for key, child in node.items():
            found.extend(_schema_nodes(child, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found.extend(_schema_nodes(child, f"{path}[{i}]"))
    return found


def test_every_object_in_the_values_schema_refuses_additional_properties() -> None:
    import json

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    nodes = _schema_nodes(schema)
    assert len(nodes) > 20
    open_nodes = [path for path, node in nodes if node.get("additionalProperties") is not False]
    assert open_nodes == []


def test_default_values_validate_against_the_schema() -> None:
    chart = helm_python.Chart.load(CHART_DIR)
    chart.validate_schema(chart.values)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_key(line: str) -> bool:
    return re.match(r"^\s*[A-Za-z][\w./-]*:", line) is not None


def _commented(lines: list[str], index: int) -> bool:
    """A key is documented by a comment line right above it, or by its parent key's comment."""
    if index > 0 and lines[index - 1].strip().startswith("#"):
        return True
    for j in range(index - 1, -1, -1):
        if _is_key(lines[j]) and _indent(lines[j]) < _indent(lines[index]):
            return _commented(lines, j)
    return False


def test_every_value_is_commented() -> None:
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if _is_key(line)]
    assert len(keys) > 50
    assert [lines[i].strip() for i in keys if not _commented(lines, i)] == []


def test_chart_crds_are_the_repository_crds_byte_for_byte() -> None:
    chart = helm_python.Chart.load(CHART_DIR)
    crds = {Path(crd["filename"]).name: crd["data"] for crd in chart.crds}
    repository = {path.name: path.read_text() for path in sorted((ROOT / "crds").glob("*.yaml"))}
    assert repository, "crds/ is empty"
    assert crds == repository
    link = CHART_DIR / "crds"
    assert link.is_symlink() and link.resolve() == (ROOT / "crds").resolve()


def test_packaged_chart_carries_the_crds_through_the_symlink(tmp_path: Path) -> None:
    archive = helm_python.package(CHART_DIR, destination=tmp_path)
    with tarfile.open(archive) as tar:
        packed = {
            Path(member.name).name: tar.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile() and "/crds/" in member.name
        }
    repository = {path.name: path.read_text() for path in sorted((ROOT / "crds").glob("*.yaml"))}
    assert packed == repository


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_notes_name_no_repository_file_and_the_real_docs_url(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    notes = rendered_chart_scenarios[scenario].notes
    # A user installing from a chart repository has no checkout: no examples/, charts/ or make.
    assert not re.search(r"\bexamples/|\bcharts/|\bmake ", notes), notes
    assert re.search(r"/api/v1/docs\b", notes)
    assert not re.search(r":\d+/docs", notes)


def test_notes_give_the_next_commands(rendered_chart_scenarios: dict[str, RenderedChart]) -> None:
    from kubetrader.specs import BacktestSpec

    notes = rendered_chart_scenarios["default"].notes
    assert "kubectl -n kubetrader apply -f - <<'EOF'" in notes
    assert "kubectl -n kubetrader get backtests" in notes
    assert "helm test kubetrader -n kubetrader --logs" in notes
    assert "http://localhost:30080" in notes
    assert "http://localhost:30800/api/v1/docs" in notes
    # The inline Backtest is a valid one.
    inline = notes.split("<<'EOF'\n", 1)[1].split("\n   EOF\n", 1)[0]
    document = yaml.safe_load("\n".join(line.removeprefix("   ") for line in inline.splitlines()))
    assert document["kind"] == "Backtest"
    BacktestSpec.model_validate(document["spec"])
    external = rendered_chart_scenarios["external"].notes
    assert "port-forward svc/kubetrader-dashboard 8501:8501" in external
    platform = rendered_chart_scenarios["platform"].notes
    assert "https://kubetrader.example.com/api/v1/docs" in platform
