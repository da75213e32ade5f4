"""Importing a strategy class by path, and checking its parameters before a run starts.

Resources refer to strategies by import path. Importing runs code, so only modules
under allowed prefixes are imported (default ``strategies.``; the environment
variable ``KUBETRADER_STRATEGY_PREFIXES`` holds a comma-separated list). Parameters
are checked against the class's Backtrader `params` before Cerebro is built, so a
typo or a wrong type fails at once with the field named, not after loading data or
(worse) by silently running with the default.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from kubetrader.errors import SpecError
from kubetrader.specs.common import Scalar, did_you_mean

DEFAULT_PREFIXES: tuple[str, ...] = ("strategies.",)
PREFIXES_ENV = "KUBETRADER_STRATEGY_PREFIXES"
# Risk limits come from `spec.risk`; setting them as strategy params would bypass the spec's validation.
RISK_PARAM_NAMES: frozenset[str] = frozenset(
    {"max_position_size", "max_concentration", "max_daily_loss", "max_drawdown", "max_order_notional"}
)


def allowed_prefixes() -> tuple[str, ...]:
    """The module prefixes strategies may be imported from (environment, else the default)."""
    raw = os.environ.get(PREFIXES_ENV, "")
    prefixes = tuple(p.strip() for p in raw.split(",") if p.strip())
    return prefixes or DEFAULT_PREFIXES


def load_strategy(path: str, *, field: str = "spec.strategy.path") -> type[Any]:
    """The BaseStrategy subclass at `path` ("package.module.Class"); SpecError naming `field` otherwise."""
    prefixes = allowed_prefixes()
    if not any(path.startswith(prefix) for prefix in prefixes):
        raise SpecError(field, f"{path!r} is outside the allowed strategy modules ({', '.join(prefixes)})")
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise SpecError(field, f"{path!r} is not a module path followed by a class name")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise SpecError(field, f"no module named {module_name!r}") from exc
        raise SpecError(field, f"module {module_name!r} failed to import: {exc}") from exc
    except Exception as exc:  # a strategy module that fails to import is the user's error, not ours
        raise SpecError(field, f"module {module_name!r} failed to import: {exc!r}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        public = [name for name in vars(module) if not name.startswith("_")]
        raise SpecError(field, f"module {module_name!r} has no class {class_name!r}{did_you_mean(class_name, public)}")
    from strategies.base_strategy import BaseStrategy

    if not (isinstance(cls, type) and issubclass(cls, BaseStrategy)):
        raise SpecError(field, f"{path!r} is not a subclass of strategies.base_strategy.BaseStrategy")
    return cls


def strategy_defaults(cls: type[Any]) -> dict[str, Any]:
    """The class's Backtrader params and their defaults."""
    return dict(cls.params._getitems())


def check_params(
    cls: type[Any], params: Mapping[str, Scalar], *, field: str = "spec.strategy.params"
) -> dict[str, Any]:
    """Validated params for `cls`: known names, values of the default's type (int -> float is allowed).

    A default of None accepts any scalar. Booleans are not numbers here: `true` for
    an int parameter is a typo, not 1.
    """
    defaults = strategy_defaults(cls)
    tunable = [name for name in defaults if name not in RISK_PARAM_NAMES]
    checked: dict[str, Any] = {}
    for name, value in params.items():
        where = f"{field}.{name}"
        if name in RISK_PARAM_NAMES:
            raise SpecError(where, "risk limits are set under spec.risk, not as strategy params")
        if name not in defaults:
            raise SpecError(where, f"unknown parameter of {cls.__name__}{did_you_mean(name, tunable)}")
        checked[name] = _coerce(value, defaults[name], where)
    return checked


def _coerce(value: Scalar, default: Any, where: str) -> Any:
    if default is None:
        return value
    expected = type(default)
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise SpecError(where, f"expected {expected.__name__} (default {default!r}), got {value!r}")
