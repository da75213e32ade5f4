"""A symbol search's answer: the matches as `kubetrader symbols search --json` prints them.

Search is an optional source (it needs a Finnhub key and the internet), so, as every optional
source of the API does, it says plainly when it is not there (`available: false` and why)
instead of failing the request.
"""

from __future__ import annotations

from pydantic import Field

from kubetrader.symbols import SymbolMatch
from kubetrader_dashboard.models.common import Availability


class SymbolSearch(Availability):
    query: str
    exchange: str
    items: list[SymbolMatch] = Field(default_factory=list)
    retryable: bool = Field(default=False, description="Unavailable for now (rate limit, network): try again later.")
