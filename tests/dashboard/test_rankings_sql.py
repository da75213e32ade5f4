"""/rankings is grouped and ordered in SQL (ResultStore.ranking_rows): the same rows as ranking the
documents in Python, which is what these tests do to check it (best, mean, counts, ties, missing values).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from kubetrader.results.store import result_paths, write_document
from kubetrader_dashboard.services.results import ResultFilter, ResultStore

STRATEGIES = ["strategies.a.A", "strategies.b.B", "strategies.c.C"]


def _reference(documents: dict[str, Any], metric: str, *, descending: bool, group_by: str) -> list[tuple[Any, ...]]:
    """The ranking by hand: each strategy's best result (the first in (strategy, id) order among ties) and its mean."""
    documents = dict(sorted(documents.items(), key=lambda item: (item[1].metadata.strategy, item[0])))

    def value(metrics: dict[str, Any], name: str = metric) -> float | None:
        v = metrics.get(name)
        return None if v is None or not math.isfinite(v) else v

    def order(v: float | None) -> float:
        return math.inf if v is None else (-v if descending else v)

    rows: list[tuple[Any, ...]] = []
    if group_by == "result":
        for rid, d in documents.items():
            m = d.metrics
            rows.append((rid, d.metadata.strategy, 1, value(m), value(m), rid, *(value(m, n) for n in _SHOWN)))
    else:
        for strategy in dict.fromkeys(d.metadata.strategy for d in documents.values()):
            members = [(rid, d.metrics) for rid, d in documents.items() if d.metadata.strategy == strategy]
            scored = sorted(
                ((value(m), rid, m) for rid, m in members if value(m) is not None), key=lambda s: order(s[0])
            )
            if scored:
                best, rid, m = scored[0]
                mean = statistics.fmean(v for v, _, _ in scored if v is not None)
                rows.append((strategy, strategy, len(members), best, mean, rid, *(value(m, n) for n in _SHOWN)))
            else:
                rows.append((strategy, strategy, len(members), None, None, None, None, None, None))
    return sorted(rows, key=lambda r: order(r[3]))  # stable: ties keep the (strategy, id) order


_SHOWN = ("sharpe_ratio", "total_return", "max_drawdown")


@pytest.fixture(scope="module")
def ranked_store(sma_orcl_result: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[ResultStore, dict[str, Any]]:
    template = sma_orcl_result.to_document("template")
    results_dir: Path = tmp_path_factory.mktemp("rankings")
    documents: dict[str, Any] = {}
    for i in range(12):
        rid = f"r{i:02d}"
        strategy = STRATEGIES[i % 3]
        metrics = dict(template.metrics)
        metrics.update(
            sharpe_ratio=[0.5, 1.25, 0.5, -0.3][i % 4] + (0.0 if i < 8 else 0.01 * i),  # ties among the first 8
            total_return=0.01 * i,
            annual_volatility=None if strategy == STRATEGIES[2] else 0.1 + 0.01 * (i % 5),  # C: never scored
            calmar_ratio=float("nan") if i % 4 == 1 else 0.2 * i,  # not a headline column: json_extract
        )
        metadata = template.metadata.model_copy(update={"id": rid, "name": rid, "strategy": strategy})
        document = template.model_copy(update={"metadata": metadata, "metrics": metrics})
        write_document(document, result_paths(results_dir, rid).json)
        documents[rid] = document
    store = ResultStore(results_dir)
    yield store, documents
    store.close()


@pytest.mark.parametrize("group_by", ["strategy", "result"])
@pytest.mark.parametrize(
    ("metric", "descending"),
    [("sharpe_ratio", True), ("calmar_ratio", True), ("annual_volatility", False), ("total_return", False)],
)
def test_sql_ranking_matches_ranking_the_documents(
    ranked_store: tuple[ResultStore, dict[str, Any]], metric: str, descending: bool, group_by: str
) -> None:
    store, documents = ranked_store
    got = store.ranking_rows(ResultFilter(), metric=metric, descending=descending, group_by=group_by, limit=1000)  # type: ignore[arg-type]
    assert got == _reference(documents, metric, descending=descending, group_by=group_by)


def test_sql_ranking_cuts_to_the_limit_after_ordering(ranked_store: tuple[ResultStore, dict[str, Any]]) -> None:
    store, documents = ranked_store
    got = store.ranking_rows(ResultFilter(), metric="sharpe_ratio", descending=True, group_by="result", limit=3)
    assert got == _reference(documents, "sharpe_ratio", descending=True, group_by="result")[:3]


def test_sql_ranking_refuses_an_unknown_metric(ranked_store: tuple[ResultStore, dict[str, Any]]) -> None:
    store, _ = ranked_store
    with pytest.raises(ValueError, match="unknown metric"):
        store.ranking_rows(ResultFilter(), metric="x') --", descending=True, group_by="result", limit=3)
