"""The engine's log of one run, kept in a file beside its result (`{id}.log`, `studies/{name}.log`).

What the run logged (the `kubetrader` and `strategies` loggers, INFO and up) goes to the
file as well as wherever it went before, so the dashboard's Logs tab shows a local run's
output as it shows a Job's pod log in a cluster. The file is the last run's: a re-run of
the same id starts it afresh, as it overwrites the result.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

LOGGERS = ("kubetrader", "strategies")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def capture(path: Path) -> Iterator[logging.Logger]:
    """Log INFO and up of the engine's loggers to `path` for the duration; yields the run's logger."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%S%z"))
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        yield logging.getLogger("kubetrader.run")
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()
