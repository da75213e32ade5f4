"""The mapping from a result document to MLflow params, metrics and tags (pure, no MLflow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrader.results.schema import ResultDocument
from kubetrader.specs.metrics import METRIC_NAMES
from kubetrader.tracking import flatten, naming
from kubetrader.tracking.maintenance import index_statements, parse_age
from kubetrader.tracking.projects import rank_strategies, tag_filter
from tests.tracking.documents import write_backtest


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> ResultDocument:
    return write_backtest(tmp_path_factory.mktemp("results"), "bt-flatten", project="Q1_2025", family="MeanReversion")[
        0
    ]


def test_experiment_is_named_project_asset_class_family_and_strategy_class(document: ResultDocument) -> None:
    path = flatten.experiment_path(document)
    assert path.name == "Q1_2025.Equities.MeanReversion.SMACrossover"
    assert naming.ExperimentPath.parse(path.name) == path


def test_experiment_name_with_missing_level_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Project\.AssetClass"):
        naming.ExperimentPath.parse("Q1_2025.Equities.SMACrossover")


def test_params_hold_strategy_params_data_range_costs_and_risk_limits(document: ResultDocument) -> None:
    params = flatten.params_from_spec(flatten.backtest_spec(document))
    assert params["fast"] == "10" and params["slow"] == "30"
    assert params["strategy"] == "strategies.sma_crossover.SMACrossover"
    assert params["data.symbols"] == "ORCL"
    assert (params["data.start"], params["data.end"]) == ("2005-01-01", "2009-12-31")
    assert params["broker.cash"] == "100000.0"
    assert params["broker.commission.model"] == "ib-standard"
    assert params["broker.slippage.market_bps"] == "5.0"
    assert params["risk.max_drawdown"] == "0.5"
    assert params["risk.max_position_size"] == "5000.0"
    assert not any(key.startswith(("tracking", "matrix")) for key in params)


def test_metrics_skip_undefined_values_and_add_the_run_duration(document: ResultDocument) -> None:
    metrics = flatten.metrics_from_document(document)
    defined = {k for k, v in document.metrics.items() if v is not None}
    assert set(metrics) == defined | {flatten.DURATION_METRIC}
    assert len(defined) < len(METRIC_NAMES)  # the document has undefined metrics, and they are left out
    assert metrics["sharpe_ratio"] == pytest.approx(document.metrics["sharpe_ratio"])


def test_tags_carry_every_level_symbols_status_versions_and_hashes(document: ResultDocument) -> None:
    tags = flatten.tags_from_document(document, flatten.experiment_path(document))
    assert tags["project"] == "Q1_2025" and tags["strategy_family"] == "MeanReversion"
    assert tags["strategy"] == "SMACrossover" and tags["asset_class"] == "Equities"
    assert tags["symbols"] == "ORCL" and tags["status"] == "succeeded"
    assert tags["package_version"] == "0.1.0"
    assert tags["data_hash"] == document.metadata.data_hash
    assert tags["spec_hash"] == document.metadata.spec_hash
    assert tags["result_id"] == "bt-flatten"


def test_failed_backtest_maps_to_failed_run_with_its_error(tmp_path: Path) -> None:
    failed, _ = write_backtest(tmp_path, "bt-failed", status="failed", error="StrategyError: boom")
    assert flatten.run_status(failed) == "FAILED"
    assert flatten.tags_from_document(failed, flatten.experiment_path(failed))["error"] == "StrategyError: boom"


def test_filter_values_are_quoted_and_escaped() -> None:
    assert tag_filter("tags", {"project": "it's", "asset_class": None}) == ["tags.project = 'it\\'s'"]


def test_ages_parse_with_units_and_garbage_is_refused() -> None:
    assert parse_age("90d").days == 90
    assert parse_age("2w").days == 14
    with pytest.raises(ValueError, match="90d"):
        parse_age("ninety days")


def test_index_statements_are_idempotent_and_partial_on_the_platform_tag_keys() -> None:
    statements = index_statements("postgresql")
    assert all("IF NOT EXISTS" in sql for sql in statements.values())
    assert "WHERE key IN ('project'" in statements["kubetrader_tags_key_value"]
    assert "varchar_pattern_ops" in statements["kubetrader_experiments_name"]
    assert "varchar_pattern_ops" not in index_statements("sqlite")["kubetrader_experiments_name"]


def test_rank_strategies_follows_the_metric_direction() -> None:
    import pandas as pd

    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d"],
            "experiment": ["P.E.F.A", "P.E.F.A", "P.E.F.B", "P.E.F.C"],
            "project": "P",
            "asset_class": "E",
            "strategy_family": "F",
            "strategy": ["A", "A", "B", "C"],
            "metrics.sharpe_ratio": [0.5, 1.5, 1.0, None],
            "metrics.annual_volatility": [0.3, 0.1, 0.2, 0.4],
        }
    )
    by_sharpe = rank_strategies(runs, "sharpe_ratio")
    assert by_sharpe["strategy"].tolist() == ["A", "B"]  # C has no value and is not ranked
    assert by_sharpe.iloc[0]["best_run_id"] == "b" and by_sharpe.iloc[0]["runs"] == 2
    by_vol = rank_strategies(runs, "annual_volatility")  # smaller is better
    assert by_vol["strategy"].tolist() == ["A", "B", "C"]
    assert by_vol["rank"].tolist() == [1, 2, 3]


def test_bare_postgresql_urls_get_the_installed_driver_and_others_stay_as_written() -> None:
    from kubetrader.tracking import settings

    assert settings.database_uri("postgresql://u:p@db:5432/mlflow") == "postgresql+psycopg2://u:p@db:5432/mlflow"
    assert settings.database_uri("postgres://u@db/mlflow") == "postgresql+psycopg2://u@db/mlflow"
    for unchanged in ("postgresql+psycopg://u@db/mlflow", "sqlite:///tmp/mlflow.db", "http://mlflow:5000"):
        assert settings.database_uri(unchanged) == unchanged
    assert settings.tracking_uri("postgresql://u@db/mlflow") == "postgresql+psycopg2://u@db/mlflow"
