"""Walk-forward validation on real data, and `kubetrader run -f` of OptimizationStudy files."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrader.data import load_bars
from kubetrader.metrics import compute_metrics
from kubetrader.optimize.naming import study_key
from kubetrader.optimize.validation import WalkForwardReport, run_walk_forward
from kubetrader.specs import OptimizationStudySpec

STUDY: dict[str, Any] = {
    "backtest": {
        "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
        "data": {"symbols": ["ORCL"], "start": "2008-01-01", "end": "2011-12-31"},  # three windows
    },
    "space": {
        "fast": {"type": "int", "low": 5, "high": 25, "step": 5},
        "slow": {"type": "int", "low": 30, "high": 90, "step": 30},
    },
    "constraints": ["fast < slow"],
    "trials": 4,
    "sampler": {"type": "random", "seed": 3},
    "validation": {"walkForward": {"inSample": 504, "outOfSample": 189}},
}


UID = "6f1c0a2b-3d4e-4f50-8a6b-7c8d9e0f1a2b"


@pytest.fixture(scope="module")
def walk_forward(tmp_path_factory: pytest.TempPathFactory) -> tuple[WalkForwardReport, Path]:
    """One walk-forward run shared by the tests below (each re-ran the same study: twice the time),
    keyed as the operator's Job keys it (its namespace and uid)."""
    out = tmp_path_factory.mktemp("walkforward")
    spec = OptimizationStudySpec.model_validate(STUDY)
    report = run_walk_forward(spec, name="wf", output_dir=out, data_dir=out / "data", namespace="research", uid=UID)
    return report, out


def test_walk_forward_stitches_contiguous_out_of_sample_windows(walk_forward: tuple[WalkForwardReport, Path]) -> None:
    report, tmp_path = walk_forward
    spec = OptimizationStudySpec.model_validate(STUDY)
    dates = [
        d.date().isoformat()
        for d in load_bars("ORCL", start=spec.backtest.data.start, end=spec.backtest.data.end).index
    ]
    assert len(report.windows) == 3
    assert report.windows[0].out_of_sample[0] == dates[504]
    assert report.windows[-1].out_of_sample[1] == dates[-1]
    for before, after in zip(report.windows, report.windows[1:], strict=False):
        assert dates.index(after.out_of_sample[0]) == dates.index(before.out_of_sample[1]) + 1  # no gap, no overlap
        assert dates.index(after.in_sample[0]) == dates.index(before.in_sample[0]) + 189  # rolling
    for window in report.windows:
        assert window.best_params["fast"] < window.best_params["slow"]
        assert window.trials_complete == 4
    equity = json.loads((tmp_path / "walkforward" / "wf.json").read_text())
    assert equity["out_of_sample_metrics"]["sharpe_ratio"] == report.out_of_sample_metrics["sharpe_ratio"]
    curve = (tmp_path / "walkforward" / "wf-oos-equity.csv").read_text().splitlines()
    assert len(curve) - 1 == len(dates) - 504  # one row per out-of-sample day
    assert (tmp_path / "walkforward" / report.artifacts["plot"]).stat().st_size > 5_000


def test_each_windows_study_is_keyed_by_the_study_key_of_its_resource(
    walk_forward: tuple[WalkForwardReport, Path],
) -> None:
    """kubetrader.optimize.naming names window studies too: namespace and uid are in each one."""
    report, _ = walk_forward
    key = study_key("wf", namespace="research", uid=UID)
    for window in report.windows:
        assert window.study_name.startswith(f"{key}-w{window.index}-")


def test_walk_forward_window_value_is_the_metric_of_its_out_of_sample_returns(
    walk_forward: tuple[WalkForwardReport, Path],
) -> None:
    import pandas as pd

    report, tmp_path = walk_forward
    curve = pd.read_csv(tmp_path / "walkforward" / "wf-oos-equity.csv", index_col=0, parse_dates=True)["equity"]
    first = report.windows[0]
    segment = curve[
        (curve.index.date >= pd.Timestamp(first.out_of_sample[0]).date())
        & (curve.index.date <= pd.Timestamp(first.out_of_sample[1]).date())
    ]
    returns = segment.pct_change()
    returns.iloc[0] = segment.iloc[0] / 100_000 - 1  # the stitched curve starts at the cash
    rebuilt = (1 + returns).cumprod() * 100_000
    assert compute_metrics(rebuilt)["sharpe_ratio"] == pytest.approx(first.out_of_sample_value, rel=1e-9)


def test_run_file_runs_a_study_and_writes_its_summary(tmp_path: Path) -> None:
    study = copy.deepcopy({k: v for k, v in STUDY.items() if k != "validation"})
    study["backtest"]["data"] = {"symbols": ["ORCL"], "start": "2011-01-01", "end": "2011-12-31"}
    path = tmp_path / "study.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubetrader.io/v1alpha1",
                "kind": "OptimizationStudy",
                "metadata": {"name": "cli-study"},
                "spec": study,
            }
        )
    )
    summary_file = tmp_path / "summary.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetrader.cli.main",
            "run",
            "-f",
            str(path),
            "--output",
            str(tmp_path / "out"),
            "--summary-file",
            str(summary_file),
        ],
        capture_output=True,
        text=True,
        env={"KUBETRADER_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin"},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "succeeded" and summary["trialsComplete"] == 4
    assert summary["bestParams"]["fast"] < summary["bestParams"]["slow"]
    assert "best sharpe_ratio" in done.stdout
    best = json.loads(Path(summary["result"]).read_text())
    assert best["metrics"]["sharpe_ratio"] == pytest.approx(summary["bestValue"], rel=1e-12)


def test_run_file_refuses_a_study_whose_constraints_exclude_everything(tmp_path: Path) -> None:
    study = {**STUDY, "constraints": ["fast > slow"]}
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubetrader.io/v1alpha1",
                "kind": "OptimizationStudy",
                "metadata": {"name": "bad"},
                "spec": study,
            }
        )
    )
    summary_file = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, "-m", "kubetrader.cli.main", "run", "-f", str(path), "--summary-file", str(summary_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "constraints: the constraints exclude every point" in done.stderr
    assert json.loads(summary_file.read_text())["status"] == "failed"
