"""The one registry of command-line options that describe a backtest.

`backtest`, `optimize`, `walkforward` and `parallel` take the same options with the
same names and defaults, and turn them into the same BacktestSpec through
`backtest_spec_from_options`, so a flag means one thing everywhere.

Every subcommand module imports this one to declare its options, so it imports nothing heavy
itself: the spec models (pydantic, ~0.2 s) load when a spec is built, not for `--help` or for
`live emergency-stop`, whose start-up is the time to the first cancel.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from kubetrader.errors import SpecError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from kubetrader.specs import BacktestSpec

F = Callable[..., Any]


class GreedyOption(click.Option):
    """An option that takes every value up to the next option: `--symbols ORCL NVDA YHOO`.

    click options take a fixed number of values; users of the platform this replaces
    type lists this way, so the parser is taught to consume the following words.
    """

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            parser_option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if parser_option is None:
                continue
            original = parser_option.process

            def process(value: Any, state: Any, _original: Any = original) -> None:
                values = [value]
                while state.rargs and not state.rargs[0].startswith("-"):
                    values.append(state.rargs.pop(0))
                _original(" ".join(values), state)

            parser_option.process = process


def greedy_option(*names: str, **kwargs: Any) -> Callable[[F], F]:
    return click.option(*names, cls=GreedyOption, multiple=True, **kwargs)


def _parse_param(value: str) -> tuple[str, Any]:
    if "=" not in value:
        raise click.BadParameter(f"{value!r}: expected NAME=VALUE", param_hint="--param")
    name, raw = value.split("=", 1)
    import yaml

    return name.strip(), yaml.safe_load(raw)


def data_options() -> Callable[[F], F]:
    def decorate(f: F) -> F:
        for option in reversed(
            [
                greedy_option(
                    "--symbols",
                    "symbols",
                    required=True,
                    help="Symbols: --symbols ORCL NVDA (or repeated, or comma-separated).",
                ),
                click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day."),
                click.option("--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last day."),
                click.option("--timeframe", default="1d", show_default=True, help="Bar size: 1d, 1h, 5m, 1m."),
                click.option("--benchmark", default=None, help="Benchmark symbol (default: the first symbol)."),
                click.option("--cash", type=float, default=100_000.0, show_default=True, help="Starting cash."),
                click.option(
                    "--commission",
                    default="ib-standard",
                    show_default=True,
                    help="Commission model: ib-standard, ib-pro, none.",
                ),
                click.option(
                    "--slippage-bps",
                    type=float,
                    default=5.0,
                    show_default=True,
                    help="Slippage of market orders in basis points.",
                ),
            ]
        ):
            f = option(f)
        return f

    return decorate


def tracking_options(f: F) -> F:
    for option in reversed(
        [
            click.option("--mlflow", is_flag=True, help="Log to MLflow (MLFLOW_TRACKING_URI or the local store)."),
            click.option("--project", default="Default", show_default=True, help="MLflow project level."),
            click.option("--asset-class", default="Equities", show_default=True, help="MLflow asset-class level."),
            click.option("--strategy-family", default="General", show_default=True, help="MLflow family level."),
        ]
    ):
        f = option(f)
    return f


def split_words(values: tuple[str, ...] | str) -> list[str]:
    """Values of a greedy or repeated option, also accepting commas: ("a b", "c,d") -> [a, b, c, d]."""
    items = [values] if isinstance(values, str) else list(values)
    return [s.strip() for v in items for s in v.replace(",", " ").split() if s.strip()]


def split_symbols(values: tuple[str, ...] | str) -> list[str]:
    return [s.upper() for s in split_words(values)]


def backtest_spec_from_options(
    *,
    strategy: str,
    symbols: tuple[str, ...] | str,
    start: dt.datetime,
    end: dt.datetime,
    params: tuple[str, ...] = (),
    timeframe: str = "1d",
    benchmark: str | None = None,
    cash: float = 100_000.0,
    commission: str = "ib-standard",
    slippage_bps: float = 5.0,
    mlflow: bool = False,
    project: str = "Default",
    asset_class: str = "Equities",
    strategy_family: str = "General",
    **_: Any,
) -> BacktestSpec:
    """Build and validate a BacktestSpec; a bad value raises SpecError naming the option."""
    from pydantic import ValidationError

    from kubetrader.specs import BacktestSpec

    raw = {
        "strategy": {"path": strategy, "params": dict(_parse_param(p) for p in params)},
        "data": {
            "symbols": split_symbols(symbols),
            "start": start.date().isoformat(),
            "end": end.date().isoformat(),
            "timeframe": timeframe,
            **({"benchmark": benchmark.upper()} if benchmark else {}),
        },
        "broker": {"cash": cash, "commission": {"model": commission}, "slippage": {"marketBps": slippage_bps}},
        "tracking": {
            "enabled": mlflow,
            "project": project,
            "assetClass": asset_class,
            "strategyFamily": strategy_family,
        },
    }
    try:
        return BacktestSpec.model_validate(raw)
    except ValidationError as exc:
        raise spec_error_from_validation(exc, _OPTION_NAMES) from None


_OPTION_NAMES = {
    "strategy.path": "--strategy",
    "strategy.params": "--param",
    "data.symbols": "--symbols",
    "data.start": "--start",
    "data.end": "--end",
    "data": "--start/--end",
    "data.timeframe": "--timeframe",
    "broker.cash": "--cash",
    "broker.commission.model": "--commission",
    "broker.slippage.marketBps": "--slippage-bps",
}


def spec_error_from_validation(exc: ValidationError, names: dict[str, str] | None = None) -> SpecError:
    """The first pydantic error as a SpecError whose field is the option (or spec path)."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    field = (
        (names or {}).get(loc)
        or next((v for k, v in (names or {}).items() if loc.startswith(k + ".")), None)
        or loc
        or "spec"
    )
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "finite_number" and message.startswith("Input should be"):
        # pydantic's wording for SpecModel's allow_inf_nan=False; the scalar parameters already say it this way
        message = f"must be a finite number, not {first['input']}"
    return SpecError(field, message)
