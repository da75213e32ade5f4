"""`kubetrader data`: import, list and validate market data in the local store.

Thin over kubetrader.data: the same DataStore calls a worker or a downloader
makes, with the results drawn as tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import click

from kubetrader.specs.backtest import Timeframe

if TYPE_CHECKING:
    from rich.console import Console

    from kubetrader.data.store import DataStore, MergeReport
    from kubetrader.data.validation import ValidationReport

TIMEFRAMES = get_args(Timeframe)  # the spec models are the one list of timeframes


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _store(ctx: click.Context) -> DataStore:
    from kubetrader.data import DataStore

    return DataStore(ctx.obj)


def _when(value: object, timeframe: str) -> str:
    from kubetrader.data.validation import stamp

    return "" if value is None else stamp(value, timeframe)  # type: ignore[arg-type]


def _print_merge(console: Console, report: MergeReport) -> None:
    console.print(report.summary())
    if report.conflicts:
        console.print(f"{report.replaced} stored bars differed; the imported values replaced them, e.g.:")
        for conflict in report.conflicts[:5]:
            console.print(f"  {_when(conflict.bar, report.timeframe)}: {', '.join(conflict.columns)}")
    for issue in report.warnings:
        console.print(f"{issue.severity}: {issue.message}")


def _print_validation(console: Console, report: ValidationReport) -> None:
    from rich.table import Table

    span = f"{_when(report.first, report.timeframe)} .. {_when(report.last, report.timeframe)}"
    verdict = "valid" if report.valid else "INVALID"
    console.print(
        f"{report.symbol} {report.timeframe}: {report.bars} bars, {span}: {verdict}"
        f" ({len(report.errors)} errors, {len(report.warnings)} warnings; gap limit {report.max_gap_sessions} sessions)"
    )
    if report.issues:
        table = Table("severity", "check", "bars", "first occurrence")
        for issue in report.issues:
            table.add_row(issue.severity, issue.check, str(issue.count), issue.message)
        console.print(table)


@click.group()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="KUBETRADER_DATA_DIR",
    default=Path("data"),
    show_default=True,
    help="Root of the data store (env KUBETRADER_DATA_DIR).",
)
@click.pass_context
def data(ctx: click.Context, data_dir: Path) -> None:
    """Import, list and validate market data."""
    ctx.obj = data_dir


@data.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--symbol", required=True, help="Ticker to store the bars under, e.g. ORCL.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "yahoo", "backtrader", "ohlcv"]),
    default="auto",
    show_default=True,
    help="CSV layout; auto reads the header.",
)
@click.option("--timeframe", type=click.Choice(TIMEFRAMES), default=None, help="Bar size; inferred when omitted.")
@click.option(
    "--max-gap-sessions",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Largest run of missing business days accepted.",
)
@click.option("--relaxed", is_flag=True, help="Store the bars even if validation finds errors (reported, not fixed).")
@click.pass_context
def import_(
    ctx: click.Context, file: Path, symbol: str, fmt: str, timeframe: str | None, max_gap_sessions: int, relaxed: bool
) -> None:
    """Import FILE (Yahoo, Backtrader or OHLCV CSV) into the store; corrupt bars are refused."""
    report = _store(ctx).import_file(
        file, symbol, fmt=fmt, timeframe=timeframe, strict=not relaxed, max_gap_sessions=max_gap_sessions
    )
    _print_merge(_console(), report)


@data.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List the data sets in the store, and the bundled ones not imported yet (they are on first use)."""
    from rich.table import Table

    from kubetrader.data.bundled import BUNDLED

    store = _store(ctx)
    rows = store.list()
    console = _console()
    if not rows:
        console.print(f"no data in {store.root} yet: the bundled symbols below are imported on first use")
    table = Table("symbol", "timeframe", "first", "last", "bars", "source", title=str(store.root))
    for row in rows:
        table.add_row(
            row.symbol,
            row.timeframe,
            _when(row.first, row.timeframe),
            _when(row.last, row.timeframe),
            str(row.bars),
            row.source,
        )
    stored = {(row.symbol, row.timeframe) for row in rows}
    for symbol, timeframe in BUNDLED:
        if (symbol, timeframe) not in stored:
            table.add_row(symbol, timeframe, "", "", "", "bundled (imported on first use)")
    console.print(table)


@data.command("validate")
@click.argument("symbol")
@click.option("--timeframe", type=click.Choice(TIMEFRAMES), default="1d", show_default=True)
@click.option(
    "--max-gap-sessions",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Largest run of missing business days accepted.",
)
@click.pass_context
def validate(ctx: click.Context, symbol: str, timeframe: str, max_gap_sessions: int) -> None:
    """Check the stored bars of SYMBOL; exit 2 when any check fails."""
    from kubetrader.data.loader import require_dataset
    from kubetrader.errors import EXIT_FATAL

    store = _store(ctx)
    require_dataset(store, symbol, timeframe)
    report = store.validate(symbol, timeframe, max_gap_sessions=max_gap_sessions)
    _print_validation(_console(), report)
    if not report.valid:
        # SystemExit, not ctx.exit: main() runs click with standalone_mode=False, which turns ctx.exit into a return
        raise SystemExit(EXIT_FATAL)


@data.command("download")
@click.argument("symbol")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last day.")
@click.option("--resolution", default="Daily", show_default=True, help="Daily, Hour or Minute.")
@click.option("--exchange", default="SMART", show_default=True, help="IB exchange, when SYMBOL is not resolved yet.")
@click.option("--currency", default="", help="Currency, when SYMBOL is not resolved yet (blank: any).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=4002, show_default=True)
@click.option("--client-id", type=int, default=996, show_default=True, help="A client id the runner does not use.")
@click.pass_context
def download_(
    ctx: click.Context,
    symbol: str,
    start: Any,
    end: Any,
    resolution: str,
    exchange: str,
    currency: str,
    host: str,
    port: int,
    client_id: int,
) -> None:
    """Download SYMBOL's bars from IB (a `symbols search` result, or one `symbols resolve` stored) into the store.

    The stored contract (`contracts/SYMBOL.json`) is used when there is one; otherwise
    SYMBOL is resolved first, and an ambiguous one lists its candidates and stores
    nothing. Then the paced IB download runs and its bars are validated and merged.
    """
    from kubetrader.data.store import check_symbol
    from kubetrader.live.connection import RetryPolicy, connect_with_retry
    from kubetrader.live.download import Pacer, download
    from kubetrader.live.download import resolution as parse_resolution
    from kubetrader.live.ib_broker import IBBroker
    from kubetrader.symbols.resolve import load_contract, resolve, save_contract

    symbol = check_symbol(symbol.upper())
    res = parse_resolution(resolution)
    store = _store(ctx)
    contract = load_contract(store.root, symbol)
    broker = IBBroker(host, port, client_id, timeout=60.0)
    connect_with_retry(broker, RetryPolicy(attempts=3, base_delay=0.5, max_delay=5.0))
    try:
        if contract is None:
            contract = resolve(broker, symbol, exchange=exchange, currency=currency)
            save_contract(store.root, symbol, contract)
        broker.currency = contract.currency  # the download asks for this listing, not just the ticker
        (report,) = download(broker, [symbol], start.date(), end.date(), res, store, pacer=Pacer())
    finally:
        broker.disconnect()
    click.echo(f"{contract.label()}")
    click.echo(f"{report.symbol}: {report.bars} bars in {report.requests} requests, {report.added} new")
