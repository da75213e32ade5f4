"""Test-only strategies for studies (loaded with KUBETRADER_STRATEGY_PREFIXES including this module)."""

from __future__ import annotations

from typing import Any, ClassVar

import backtrader as bt
import pandas as pd

from strategies.sma_crossover import SMACrossover

PREFIX = "tests.optimize.probes."


class RecordsBars(SMACrossover):
    """SMACrossover that records the timestamps of every bar it is shown, one list per run, in SEEN[tag]."""

    SEEN: ClassVar[dict[str, list[list[float]]]] = {}  # Backtrader float dates; `seen` converts them
    params: tuple[tuple[str, Any], ...] = (("tag", "default"),)

    def start(self) -> None:
        self._seen: list[float] = []
        self.SEEN.setdefault(self.p.tag, []).append(self._seen)

    def prenext(self) -> None:
        self._record()

    def next(self) -> None:
        self._record()
        super().next()

    def _record(self) -> None:
        self._seen.append(self.data.datetime[0])


def seen(tag: str) -> list[list[pd.Timestamp]]:
    """The bars each run of RecordsBars(tag=tag) was shown, as UTC timestamps."""
    return [[pd.Timestamp(bt.num2date(x), tz="UTC").round("s") for x in run] for run in RecordsBars.SEEN.get(tag, [])]
