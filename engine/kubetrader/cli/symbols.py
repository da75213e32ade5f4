"""`kubetrader symbols search`: find a symbol on Finnhub (issue 24).

Thin over kubetrader.symbols: the key from FINNHUB_API_KEY (or FINNHUB_API_KEY_FILE),
answers cached under the data directory, waits on a 429 said on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def _cache_dir() -> Path:
    from kubetrader import defaults
    from kubetrader.symbols import finnhub_cache_dir

    return finnhub_cache_dir(defaults.data_dir())


@click.group()
def symbols() -> None:
    """Find symbols to trade."""


@symbols.command("search")
@click.argument("query")
@click.option("--exchange", default="US", show_default=True, help="Finnhub exchange code.")
@click.option("--type", "type_", default=None, help='Security type, e.g. "Common Stock", "ETP".')
@click.option("--json", "as_json", is_flag=True, help="Print the matches as JSON.")
@click.option("--no-cache", is_flag=True, help="Ask Finnhub even when a cached answer is fresh.")
def search(query: str, exchange: str, type_: str | None, as_json: bool, no_cache: bool) -> None:
    """Search Finnhub's symbol lookup for QUERY (a name or ticker)."""
    from kubetrader.symbols import FinnhubSymbols, finnhub_key

    client = FinnhubSymbols(
        finnhub_key(),
        cache_dir=None if no_cache else _cache_dir(),
        notify=lambda message: click.echo(message, err=True),
    )
    try:
        matches = client.search(query, exchange=exchange, type_=type_)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps([m.model_dump() for m in matches], indent=2))
        return
    if not matches:
        click.echo(f"no symbols match {query!r} on {exchange}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("symbol", "description", "type", "exchange", "currency", "FIGI", title=f"{query} on {exchange}")
    for m in matches:
        table.add_row(m.symbol, m.description, m.type, m.exchange or "", m.currency or "", m.figi or "")
    Console(highlight=False, soft_wrap=True).print(table)


@symbols.command("resolve")
@click.argument("symbol")
@click.option("--sec-type", default="STK", show_default=True, help="IB security type.")
@click.option("--exchange", default="SMART", show_default=True, help="IB exchange (routing).")
@click.option("--currency", default="", help="Currency, e.g. USD (blank: any).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=4002, show_default=True)
@click.option("--client-id", type=int, default=997, show_default=True, help="A client id the runner does not use.")
@click.option("--json", "as_json", is_flag=True, help="Print the contract as JSON.")
def resolve_cmd(
    symbol: str,
    sec_type: str,
    exchange: str,
    currency: str,
    host: str,
    port: int,
    client_id: int,
    as_json: bool,
) -> None:
    """Resolve SYMBOL to IB's exact contract and store it beside the data (contracts/SYMBOL.json)."""
    from kubetrader.data.store import DataStore, check_symbol
    from kubetrader.live.connection import RetryPolicy, connect_with_retry
    from kubetrader.live.ib_broker import IBBroker
    from kubetrader.symbols.resolve import resolve, save_contract

    symbol = check_symbol(symbol.upper())
    broker = IBBroker(host, port, client_id, timeout=30.0)
    connect_with_retry(broker, RetryPolicy(attempts=3, base_delay=0.5, max_delay=5.0))
    try:
        contract = resolve(broker, symbol, sec_type=sec_type, exchange=exchange, currency=currency)
    finally:
        broker.disconnect()
    path = save_contract(DataStore().root, symbol, contract)
    if as_json:
        click.echo(contract.model_dump_json(indent=2))
        return
    click.echo(f"{contract.label()}: {contract.long_name}, min tick {contract.min_tick:g}, {contract.time_zone}")
    click.echo(f"stored:      {path}")
