"""Symbol search for the dashboard: Finnhub's lookup, as `kubetrader symbols search` does it (issue 24).

The same client (kubetrader.symbols.FinnhubSymbols) and the same disk cache as the CLI, so a
search made in one is answered from the cache in the other. Two differences, both because this
runs inside a request: a 429 is not waited out (the caller gets a retryable problem at once
instead of a request that hangs for 14 s), and the key is read when a search is made, not at
start, so a key mounted later from a Secret (`FINNHUB_API_KEY_FILE`) is picked up.
"""

from __future__ import annotations

from pathlib import Path

from kubetrader.errors import FatalError, InfrastructureError, SpecError
from kubetrader.symbols import FinnhubSymbols, SymbolMatch, finnhub_cache_dir, finnhub_key


class SymbolSearchUnavailableError(Exception):
    """Search cannot answer now: no key, the key refused, or Finnhub unreachable or rate limited."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class SymbolService:
    def __init__(self, data_dir: Path) -> None:
        self._cache_dir = finnhub_cache_dir(data_dir)

    def search(self, query: str, *, exchange: str, type_: str | None) -> list[SymbolMatch]:
        """Matches of `query`; SpecError for a bad query, SymbolSearchUnavailableError when Finnhub can't answer."""
        try:
            key = finnhub_key()
        except SpecError as exc:
            reason = f"symbol search is not configured: {exc.problem}"
            raise SymbolSearchUnavailableError(reason, retryable=False) from None
        client = FinnhubSymbols(key, cache_dir=self._cache_dir, retry_waits=())
        try:
            return client.search(query, exchange=exchange, type_=type_)
        except SpecError:
            raise
        except FatalError as exc:
            raise SymbolSearchUnavailableError(str(exc), retryable=False) from None
        except InfrastructureError as exc:
            raise SymbolSearchUnavailableError(str(exc), retryable=True) from None
        finally:
            client.close()
