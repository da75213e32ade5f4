"""How a study gets its trials evaluated: in this process, or over the work queue.

The driver only sees the `Evaluator` protocol: submit a keyed backtest, collect
finished ones. Keys are deterministic (`{study}-t{trial number}`), so a restarted
driver can ask the queue what became of a trial it submitted before it died.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kubetrader.errors import FatalError, KubetraderError
from kubetrader.specs.backtest import BacktestSpec


@dataclass(frozen=True)
class Evaluation:
    """A finished trial backtest: metrics, or an error (and whether a retry may help)."""

    key: str
    metrics: dict[str, float | None] | None
    returns: list[float] | None = None
    error: str | None = None
    retryable: bool = False


class Evaluator(Protocol):
    capacity: int

    def submit(self, key: str, spec: BacktestSpec) -> None: ...

    def collect(self, timeout: float) -> list[Evaluation]: ...

    def lookup(self, key: str) -> Evaluation | None:
        """A result for a key submitted earlier (by this or a previous driver), if any."""
        ...

    def in_flight(self, key: str) -> bool:
        """True while the key is still queued or being worked on."""
        ...

    def cancel(self) -> None: ...


TrialFunction = Callable[[BacktestSpec], tuple[dict[str, float | None], list[float]]]


def run_trial_backtest(spec: BacktestSpec) -> tuple[dict[str, float | None], list[float]]:
    """The default trial: a Backtrader run and its metrics; no result files or plots
    (trials are many; the best ones are re-run in full)."""
    from kubetrader.runner import BacktestRunner

    result = BacktestRunner(spec).run()
    returns = [float(x) for x in result.equity.pct_change().fillna(0.0).to_numpy()]
    return dict(result.metrics), returns


@dataclass
class InProcessEvaluator:
    """Runs each trial synchronously on submit: the simplest correct evaluator, used
    without workers and in tests of the driver's bookkeeping."""

    run: TrialFunction = run_trial_backtest
    capacity: int = 1
    _done: dict[str, Evaluation] = field(default_factory=dict)
    _fresh: list[Evaluation] = field(default_factory=list)

    def submit(self, key: str, spec: BacktestSpec) -> None:
        try:
            metrics, returns = self.run(spec)
            evaluation = Evaluation(key=key, metrics=metrics, returns=returns)
        except KubetraderError as exc:
            evaluation = Evaluation(key=key, metrics=None, error=str(exc), retryable=not isinstance(exc, FatalError))
        except Exception as exc:  # a strategy bug must fail the trial, not the study
            evaluation = Evaluation(key=key, metrics=None, error=f"{type(exc).__name__}: {exc}")
        self._done[key] = evaluation
        self._fresh.append(evaluation)

    def collect(self, timeout: float) -> list[Evaluation]:
        fresh, self._fresh = self._fresh, []
        return fresh

    def lookup(self, key: str) -> Evaluation | None:
        return self._done.get(key)

    def in_flight(self, key: str) -> bool:
        return False

    def cancel(self) -> None:
        self._fresh.clear()
