"""Test-only strategies for live runs (loaded with KUBETRADER_STRATEGY_PREFIXES including this module)."""

from __future__ import annotations

from typing import Any

from strategies.base_strategy import BaseStrategy


class BuyOnce(BaseStrategy):
    """Buys `size` shares on its first bar and holds: one entry, so one bracket at the broker."""

    params: tuple[tuple[str, Any], ...] = (("size", 100),)

    def next(self) -> None:
        if len(self) == 1:
            self.buy(size=self.p.size)
