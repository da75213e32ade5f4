"""The chart README's values table is generated from values.yaml's comments and is current."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import yaml

from tests.fixtures.chart import CHART_DIR, ROOT


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("values_docs", ROOT / "charts" / "values_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_chart_readme_is_current() -> None:
    assert _generator().main(["--check"]) == 0, "charts/kubetrader/README.md is stale: run `make chart-docs`"


def test_rows_follow_helm_docs_comments() -> None:
    text = """# A section, not a row.
section:
  # -- A documented map is one row,
  # its comment may go on.
  resources:
    requests: {cpu: 1}
  # -- A leaf.
  enabled: true
"""
    assert _generator().rows(text) == [
        (
            "section.resources",
            "object",
            '`{"requests":{"cpu":1}}`',
            "A documented map is one row, its comment may go on.",
        ),
        ("section.enabled", "bool", "`true`", "A leaf."),
    ]


def _leaves(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [leaf for key, child in node.items() for leaf in _leaves(child, f"{path}.{key}" if path else key)]
    return [path]


def test_every_value_is_in_the_table_with_a_description() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    rows = _generator().rows((CHART_DIR / "values.yaml").read_text())
    keys = {key for key, *_ in rows}
    assert all(description for *_, description in rows), [key for key, *_, d in rows if not d]
    for leaf in _leaves(values):
        parts = leaf.split(".")
        assert any(".".join(parts[:i]) in keys for i in range(1, len(parts) + 1)), leaf
    readme = (CHART_DIR / "README.md").read_text()
    for key in (
        "auth.redis.existingSecret",
        "global.tolerations",
        "monitoring.grafanaDashboard.labels",
        "crds.checkStale",
    ):
        assert f"| {key} |" in readme, key
