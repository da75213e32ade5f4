"""The robustness view's numbers: the best point's neighbourhood and plateau score, the heatmap, top-K."""

from __future__ import annotations

import pytest

from kubetrader.optimize.robustness import TrialPoint, heatmap, neighbourhood, plateau_score, robustness
from kubetrader.optimize.space import parse_space

SPACE = parse_space(
    {
        "fast": {"type": "int", "low": 5, "high": 25, "step": 5},
        "slow": {"type": "int", "low": 30, "high": 90, "step": 30},
    }
)


def grid_points(value: object) -> list[TrialPoint]:
    points = []
    for i, (fast, slow) in enumerate((f, s) for f in range(5, 30, 5) for s in (30, 60, 90)):
        points.append(TrialPoint(number=i, params={"fast": fast, "slow": slow}, value=value(fast, slow)))  # type: ignore[operator]
    return points


def test_a_spike_has_a_plateau_score_of_zero_and_its_neighbours_drop_by_the_spike() -> None:
    points = grid_points(lambda f, s: 2.0 if (f, s) == (15, 60) else 0.0)
    report = robustness(points, SPACE, "maximize")
    assert report.best is not None and report.best.params == {"fast": 15, "slow": 60}
    drops = {(n.param, n.side): n.drop for n in report.neighbours}
    assert drops == {("fast", "-"): 2.0, ("fast", "+"): 2.0, ("slow", "-"): 2.0, ("slow", "+"): 2.0}
    assert report.plateau_score == 0.0


def test_a_plateau_scores_one_and_a_slope_in_between() -> None:
    flat_top = grid_points(
        lambda f, s: 1.01 if (f, s) == (15, 60) else 1.0 if 10 <= f <= 20 and s == 60 else (0.99 if f == 15 else 0.0)
    )
    best = max(flat_top, key=lambda p: p.value)
    assert plateau_score(best, neighbourhood(best, flat_top, SPACE, "maximize"), flat_top) == pytest.approx(
        1.0, abs=0.02
    )
    slope = grid_points(lambda f, s: float(f))
    best = max(slope, key=lambda p: p.value)  # fast=25 at the edge: one neighbour per parameter side inside
    score = plateau_score(best, neighbourhood(best, slope, SPACE, "maximize"), slope)
    assert score is not None and 0.0 < score < 1.0


def test_minimize_counts_a_higher_neighbour_as_a_drop_and_missing_neighbours_are_none() -> None:
    points = [p for p in grid_points(lambda f, s: f + s / 100) if p.params != {"fast": 10, "slow": 30}]
    report = robustness(points, SPACE, "minimize")
    assert report.best is not None and report.best.params == {"fast": 5, "slow": 30}
    by = {(n.param, n.side): n for n in report.neighbours}
    assert by[("fast", "+")].objective is None and by[("fast", "+")].drop is None  # (10, 30) never evaluated
    assert by[("slow", "+")].drop == pytest.approx(0.3)


def test_heatmap_averages_repeated_points_and_leaves_unevaluated_cells_empty() -> None:
    points = [
        TrialPoint(number=0, params={"fast": 5, "slow": 30}, value=1.0),
        TrialPoint(number=1, params={"fast": 5, "slow": 30}, value=3.0),
        TrialPoint(number=2, params={"fast": 10, "slow": 60}, value=5.0),
    ]
    grid = heatmap(points, "fast", "slow")
    assert grid.x == [5, 10] and grid.y == [30, 60]
    assert grid.z == [[2.0, None], [None, 5.0]]
