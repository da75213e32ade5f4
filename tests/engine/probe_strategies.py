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


class Churn(BaseStrategy):
    """Enters with `fraction` of equity when flat, exits on the next bar: an entry attempt every other bar."""

    params: tuple[tuple[str, Any], ...] = (("fraction", 0.5),)

    def next(self) -> None:
        if self.has_open_order(self.data):
            return
        if self.position.size:
            self.close()
        else:
            self.buy(size=self.entry_size(self.data, self.p.fraction))


class NotAStrategy:
    """Not a BaseStrategy subclass."""
