"""Parameter spaces: the JSON files of the CLI and the `space` of an OptimizationStudy.

Both use the same models (kubetrader.specs.study.ParamDef), so a file that works
with `kubetrader optimize --param-space` works as a resource's `space` and back.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from kubetrader.errors import SpecError
from kubetrader.optimize.constraints import Constraint, feasible
from kubetrader.specs.study import CategoricalParam, FloatParam, IntParam, ParamDef, grid_points

Space = dict[str, ParamDef]
_SPACE_ADAPTER: TypeAdapter[Space] = TypeAdapter(Space)


def parse_space(raw: Mapping[str, Any], *, field: str = "space") -> Space:
    """Validate a space mapping; errors name the parameter and the problem."""
    if not raw:
        raise SpecError(field, "the parameter space is empty")
    try:
        return _SPACE_ADAPTER.validate_python(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p not in ("int", "float", "categorical"))
        raise SpecError(f"{field}.{where}", first["msg"]) from None


def load_space(path: Path) -> Space:
    """Read a parameter-space JSON file."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError("--param-space", f"no such file: {path}") from None
    except json.JSONDecodeError as exc:
        raise SpecError("--param-space", f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError("--param-space", f"{path} must hold an object of parameters")
    return parse_space(raw, field=str(path))


def param_values(definition: ParamDef) -> list[Any]:
    """Every value a parameter can take on a grid. Floats need a step."""
    if isinstance(definition, IntParam):
        return list(range(definition.low, definition.high + 1, definition.step))
    if isinstance(definition, CategoricalParam):
        return list(definition.choices)
    count = definition.count
    if definition.step is None or count is None:
        raise SpecError("space", "a float parameter needs a step for grid search")
    return [round(definition.low + i * definition.step, 12) for i in range(count)]


def grid(space: Space, constraints: Sequence[Constraint] = ()) -> Iterator[dict[str, Any]]:
    """All feasible grid points, in a stable order (parameter names sorted)."""
    names = sorted(space)
    for values in itertools.product(*(param_values(space[n]) for n in names)):
        point = dict(zip(names, values, strict=True))
        if feasible(point, constraints):
            yield point


def grid_size(space: Space) -> int | None:
    """Points on the grid, counted without listing any (kubetrader.specs.study.grid_points); None when a
    float parameter has no step."""
    return grid_points(space)


def to_optuna_distributions(space: Space) -> dict[str, Any]:
    """Optuna distributions for each parameter (imported here: Optuna is heavy)."""
    import optuna.distributions as dist

    out: dict[str, Any] = {}
    for name, d in space.items():
        if isinstance(d, IntParam):
            out[name] = dist.IntDistribution(d.low, d.high, step=d.step, log=d.log)
        elif isinstance(d, FloatParam):
            out[name] = dist.FloatDistribution(d.low, d.high, step=d.step, log=d.log)
        else:
            out[name] = dist.CategoricalDistribution(list(d.choices))
    return out
