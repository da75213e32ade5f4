"""Finnhub's symbol lookup through `finnhub-python`, paced, cached, and careful with the key.

Two endpoints (https://finnhub.io/docs/api/symbol-search, /docs/api/stock-symbols):

- `GET /search?q=...&exchange=US` -> `{"count": n, "result": [{"description",
  "displaySymbol", "symbol", "type"}]}`: the matches, without currency or FIGI;
- `GET /stock/symbol?exchange=US` -> `[{"currency", "description", "displaySymbol",
  "figi", "isin", "mic", "shareClassFIGI", "symbol", "symbol2", "type"}]`: every
  symbol of an exchange, which adds the currency, FIGI and primary exchange (MIC).

The free tier allows 60 calls a minute and answers 429 beyond it; both answers are
cached on disk (a day), and calls are spaced at least a second apart in a process.
A 429 waits (the `Retry-After` header if given, else 2, 4, 8 s) and says so, then
gives up with a retryable error; a 401 or 403 is a bad key, named by its variable.

The key comes from `FINNHUB_API_KEY`, or from the file `FINNHUB_API_KEY_FILE` names
(a Kubernetes Secret mounted as a volume). It is never in a spec, a result, a log
or an error message: `requests` puts the whole URL, `token=` included, into its
exception texts, so those are never passed on.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from kubetrader.errors import FatalError, InfrastructureError, SpecError

KEY_ENV = "FINNHUB_API_KEY"
KEY_FILE_ENV = "FINNHUB_API_KEY_FILE"
URL_ENV = "FINNHUB_API_URL"  # another endpoint (a proxy; the tests' local server)
DEFAULT_URL = "https://finnhub.io/api/v1"
CACHE_SECONDS = 24 * 3600
MIN_INTERVAL = 1.0  # 60 requests a minute
RETRY_WAITS = (2.0, 4.0, 8.0)


class SymbolMatch(BaseModel):
    """One search result, as the table and `--json` show it and `data download` takes it."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    description: str
    type: str
    exchange: str | None = None  # the primary exchange's MIC, e.g. XNAS
    currency: str | None = None
    figi: str | None = None


def finnhub_cache_dir(data_dir: Path) -> Path:
    """Where answers are cached: under the data directory, shared by the CLI and the dashboard's API."""
    return Path(data_dir).resolve() / "cache" / "finnhub"


def finnhub_key(environ: dict[str, str] | None = None) -> str:
    """The API key from FINNHUB_API_KEY or the file FINNHUB_API_KEY_FILE names; SpecError naming them if absent."""
    env = os.environ if environ is None else environ
    key = env.get(KEY_ENV, "").strip()
    if not key and env.get(KEY_FILE_ENV):
        try:
            key = Path(env[KEY_FILE_ENV]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SpecError(KEY_FILE_ENV, f"cannot read the key file: {exc.strerror or exc}") from None
    if not key:
        raise SpecError(KEY_ENV, f"no Finnhub API key: set {KEY_ENV} (or {KEY_FILE_ENV} to a file holding it)")
    return key


class FinnhubSymbols:
    """Symbol search against Finnhub with pacing, a disk cache and clear errors."""

    def __init__(
        self,
        key: str,
        *,
        cache_dir: Path | None,
        base_url: str | None = None,
        min_interval: float = MIN_INTERVAL,
        retry_waits: tuple[float, ...] = RETRY_WAITS,
        notify: Callable[[str], None] = lambda _message: None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import finnhub

        self._client = finnhub.Client(api_key=key)
        # finnhub-python joins API_URL and the path itself; an instance attribute points it elsewhere
        self._client.API_URL = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self._cache_dir = cache_dir
        self._min_interval = min_interval
        self._retry_waits = retry_waits
        self._notify = notify
        self._sleep = sleep
        self._clock = clock
        self._last_call: float | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    # -- the two endpoints -------------------------------------------------------------

    def search(self, query: str, *, exchange: str = "US", type_: str | None = None) -> list[SymbolMatch]:
        """Matches of `query` on `exchange`, with currency, FIGI and MIC from the exchange's symbol list."""
        if not query.strip():
            raise SpecError("query", "give a name or ticker to search for")
        found = self._get("/search", {"q": query.strip(), "exchange": exchange})
        listing = {row.get("symbol"): row for row in self._get("/stock/symbol", {"exchange": exchange}) or []}
        matches = []
        for row in (found or {}).get("result", []):
            details = listing.get(row.get("symbol"), {})
            match = SymbolMatch(
                symbol=str(row.get("symbol", "")),
                description=str(row.get("description") or details.get("description") or ""),
                type=str(row.get("type") or details.get("type") or ""),
                exchange=details.get("mic") or None,
                currency=details.get("currency") or None,
                figi=details.get("figi") or None,
            )
            if type_ is None or match.type.lower() == type_.lower():
                matches.append(match)
        return matches

    # -- transport: cache, pacing, retries ---------------------------------------------

    def _cache_path(self, path: str, params: dict[str, str]) -> Path | None:
        if self._cache_dir is None:
            return None
        key = json.dumps([path, sorted(params.items())], separators=(",", ":"))  # no key in it
        return (
            self._cache_dir
            / f"{path.strip('/').replace('/', '-')}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
        )

    def _get(self, path: str, params: dict[str, str]) -> Any:
        cached = self._cache_path(path, params)
        if cached is not None and cached.is_file():
            entry = json.loads(cached.read_text(encoding="utf-8"))
            if time.time() - float(entry.get("fetched_at", 0)) < CACHE_SECONDS:
                return entry["body"]
        body = self._call(path, params)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"fetched_at": time.time(), "body": body}), encoding="utf-8")
            os.replace(tmp, cached)
        return body

    def _pace(self) -> None:
        with self._lock:
            now = self._clock()
            if self._last_call is not None:
                wait = self._last_call + self._min_interval - now
                if wait > 0:
                    self._sleep(wait)
                    now += wait
            self._last_call = now

    def _call(self, path: str, params: dict[str, str]) -> Any:
        import finnhub
        import requests

        waits = list(self._retry_waits)
        while True:
            self._pace()
            try:
                return self._client._get(path, params=params)
            except finnhub.FinnhubAPIException as exc:
                status = int(exc.status_code)
                if status in (401, 403):
                    raise FatalError(f"Finnhub refused the key in {KEY_ENV} ({status}: {exc.message})") from None
                if status == 429 and waits:
                    wait = _retry_after(exc.response) or waits[0]
                    waits.pop(0)
                    self._notify(f"Finnhub rate limit reached (429); waiting {wait:g} s before retrying")
                    self._sleep(wait)
                    continue
                if status == 429:
                    raise InfrastructureError(
                        "Finnhub rate limit reached (429) after retrying; the free tier allows 60 requests a minute,"
                        " try again in a minute"
                    ) from None
                raise InfrastructureError(f"Finnhub answered {status} for {path}: {exc.message}") from None
            except finnhub.FinnhubRequestException:
                raise InfrastructureError(f"Finnhub sent an unreadable answer for {path}") from None
            except requests.RequestException as exc:  # its text holds the URL with the key: never pass it on
                raise InfrastructureError(f"cannot reach Finnhub for {path}: {type(exc).__name__}") from None


def _retry_after(response: Any) -> float | None:
    value = getattr(response, "headers", {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
