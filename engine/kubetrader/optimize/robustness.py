"""Is the best point a plateau or a spike? Pure computations over a study's trials.

- `neighbourhood`: for each parameter, the objective one step away from the best point
  on either side (the space's step for ints and stepped floats, the adjacent choice for
  categoricals, the nearest evaluated value for continuous floats), when that point was
  evaluated, and how much it drops.
- `plateau_score`: how good the evaluated neighbours are, between a typical trial and
  the best: for each neighbour (v - median) / (best - median), clipped to [0, 1], then
  averaged. 1 means every neighbour is as good as the best (a plateau), 0 means the
  neighbours are no better than the median trial (a spike). Undefined (None) with no
  evaluated neighbour or when the best is the median.
- `heatmap`: the mean objective over a 2-D grid of two parameters' values.
- `top_k`: the best K trials.

The input is plain (`TrialPoint`s and the space), so the report, the dashboard API and
the tests call the same functions; plots live in kubetrader.optimize.report.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from kubetrader.optimize.space import Space, param_values


class TrialPoint(BaseModel):
    number: int
    params: dict[str, Any]
    value: float


class Neighbour(BaseModel):
    param: str
    side: str = Field(description="'-' one step down, '+' one step up.")
    value_of_param: Any
    objective: float | None = Field(description="None: the neighbour was not evaluated.")
    drop: float | None = Field(description="How much worse than the best (positive is worse, either direction).")


class Heatmap(BaseModel):
    x_param: str
    y_param: str
    x: list[Any]
    y: list[Any]
    z: list[list[float | None]] = Field(description="z[j][i]: mean objective at (x[i], y[j]); None: no trial.")


class Robustness(BaseModel):
    best: TrialPoint | None
    direction: str
    neighbours: list[Neighbour]
    plateau_score: float | None
    heatmap: Heatmap | None
    top: list[TrialPoint]


def _better(direction: str) -> int:
    return 1 if direction == "maximize" else -1


def _steps(space: Space, name: str, points: Sequence[TrialPoint]) -> list[Any]:
    """The ordered values one step apart for a parameter (evaluated values for continuous floats)."""
    d = space.get(name)
    if d is not None and (d.type != "float" or d.step is not None):
        return list(param_values(d))
    return sorted({p.params[name] for p in points if name in p.params})


def neighbourhood(best: TrialPoint, points: Sequence[TrialPoint], space: Space, direction: str) -> list[Neighbour]:
    """The best point's neighbours one step away in each parameter, and their drop."""
    sign = _better(direction)
    by_point = _mean_by_point(points)
    out: list[Neighbour] = []
    for name in sorted(best.params):
        values = _steps(space, name, points)
        keys = [_key_value(v) for v in values]
        here = _key_value(best.params[name])
        if here not in keys:
            continue
        at = keys.index(here)
        for side, i in (("-", at - 1), ("+", at + 1)):
            if not 0 <= i < len(values):
                continue
            key = _key({**best.params, name: values[i]})
            objective = by_point.get(key)
            drop = None if objective is None else sign * (best.value - objective)
            out.append(Neighbour(param=name, side=side, value_of_param=values[i], objective=objective, drop=drop))
    return out


def plateau_score(best: TrialPoint, neighbours: Sequence[Neighbour], points: Sequence[TrialPoint]) -> float | None:
    values = [p.value for p in points]
    evaluated = [n.objective for n in neighbours if n.objective is not None]
    if not evaluated or len(values) < 2:
        return None
    median = statistics.median(values)
    span = best.value - median
    if span == 0 or not math.isfinite(span):
        return None
    return float(statistics.fmean(min(max((v - median) / span, 0.0), 1.0) for v in evaluated))


def heatmap(points: Sequence[TrialPoint], x_param: str, y_param: str) -> Heatmap:
    xs = sorted({p.params[x_param] for p in points if x_param in p.params}, key=_order)
    ys = sorted({p.params[y_param] for p in points if y_param in p.params}, key=_order)
    cells: dict[tuple[Any, Any], list[float]] = {}
    for p in points:
        if x_param in p.params and y_param in p.params:
            cells.setdefault((p.params[x_param], p.params[y_param]), []).append(p.value)
    z = [[statistics.fmean(cells[(x, y)]) if (x, y) in cells else None for x in xs] for y in ys]
    return Heatmap(x_param=x_param, y_param=y_param, x=xs, y=ys, z=z)


def top_k(points: Sequence[TrialPoint], direction: str, k: int = 10) -> list[TrialPoint]:
    return sorted(points, key=lambda p: (-_better(direction) * p.value, p.number))[:k]


def robustness(
    points: Sequence[TrialPoint],
    space: Space,
    direction: str,
    *,
    heatmap_params: tuple[str, str] | None = None,
    k: int = 10,
) -> Robustness:
    """Everything the robustness view shows for one study. `heatmap_params` default to the
    first two parameters of the space with more than one value."""
    points = [p for p in points if math.isfinite(p.value)]
    top = top_k(points, direction, k)
    best = top[0] if top else None
    neighbours = neighbourhood(best, points, space, direction) if best else []
    varying = [n for n in space if len({_key_value(p.params.get(n)) for p in points}) > 1]
    pair = heatmap_params or (tuple(varying[:2]) if len(varying) >= 2 else None)
    return Robustness(
        best=best,
        direction=direction,
        neighbours=neighbours,
        plateau_score=plateau_score(best, neighbours, points) if best else None,
        heatmap=heatmap(points, pair[0], pair[1]) if pair else None,
        top=top,
    )


def _mean_by_point(points: Sequence[TrialPoint]) -> dict[tuple[Any, ...], float]:
    grouped: dict[tuple[Any, ...], list[float]] = {}
    for p in points:
        grouped.setdefault(_key(p.params), []).append(p.value)
    return {k: statistics.fmean(v) for k, v in grouped.items()}


def _key(params: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, _key_value(v)) for k, v in params.items()))


def _key_value(value: Any) -> Any:
    """Floats compared at 12 significant digits (a stepped float read back from storage)."""
    return float(f"{value:.12g}") if isinstance(value, float) else value


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))
