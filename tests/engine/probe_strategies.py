"""Test-only strategies (loaded with KUBETRADER_STRATEGY_PREFIXES including this module)."""

from __future__ import annotations

from typing import Any

from strategies.base_strategy import BaseStrategy


class RaisesMidRun(BaseStrategy):
    """Raises on the `fail_at`-th bar, to check that the runner names the exception and the bar."""

    params: tuple[tuple[str, Any], ...] = (("fail_at", 50),)

    def next(self) -> None:
        if len(self) >= self.p.fail_at:
            raise RuntimeError("probe failure")


class Accumulate(BaseStrategy):
    """Buys `shares` every bar: every order opens exposure, so every risk limit gets a chance to bind."""

    params: tuple[tuple[str, Any], ...] = (("shares", 10),)

    def next(self) -> None:
        self.buy(size=self.p.shares)


class NotAStrategy:
    """Not a BaseStrategy subclass."""
