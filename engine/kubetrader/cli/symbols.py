"""`kubetrader symbols search`: find a symbol on Finnhub (issue 24).

Thin over kubetrader.symbols: the key from FINNHUB_API_KEY (or FINNHUB_API_KEY_FILE),
answers cached under the data directory, waits on a 429 said on stderr.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click


def _cache_dir() -> Path:
    return Path(os.environ.get("KUBETRADER_DATA_DIR") or "data").resolve() / "cache" / "finnhub"


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
