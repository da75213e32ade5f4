"""The operator-wide resync loop's pure parts and its per-object error handling (no cluster)."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import kopf
import pytest

from kubetrader_operator import resync


def _conditions(*terminal: str) -> dict[str, object]:
    accepted = {"type": "Accepted", "status": "True"}
    return {"conditions": [accepted, *({"type": t, "status": "True"} for t in terminal)]}


def test_unfinished_means_not_terminal_and_for_studies_also_accepted() -> None:
    assert resync.unfinished({})
    assert resync.unfinished(_conditions())
    assert not resync.unfinished(_conditions("Succeeded"))
    assert not resync.unfinished(_conditions("Failed"))
    assert not resync.unfinished({}, accepted_only=True)  # a study the create handler has not accepted yet
    assert resync.unfinished(_conditions(), accepted_only=True)


def test_due_skips_objects_changed_within_the_idle_time_and_counts_a_names_newest_change() -> None:
    entries = [(("ns", "quiet"), [10.0]), (("ns", "busy"), [99.5]), (("ns", "recreated"), [10.0, 99.0])]
    assert resync.due(entries, now=100.0, idle=0.0) == [("ns", "quiet"), ("ns", "busy"), ("ns", "recreated")]
    assert resync.due(entries, now=100.0, idle=5.0) == [("ns", "quiet")]


def test_one_objects_failure_is_logged_and_the_others_are_still_reconciled(caplog: pytest.LogCaptureFixture) -> None:
    """The timers retried each object on its own: one bad object must not stop the pass."""
    keys = [("ns", f"bt-{i}") for i in range(10)]
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def reconcile(namespace: str, name: str) -> None:
        with lock:
            seen.append((namespace, name))
        if name == "bt-3":
            raise RuntimeError("the API said no")
        if name == "bt-5":
            raise kopf.TemporaryError("status kept changing", delay=1)

    with caplog.at_level(logging.WARNING, logger=resync.__name__):
        asyncio.run(resync.reconcile_all(keys, reconcile, ThreadPoolExecutor(2)))
    assert sorted(seen) == sorted(keys)  # each once
    messages = [r.getMessage() for r in caplog.records]
    assert any("ns/bt-3 failed" in m for m in messages) and any("ns/bt-5: status kept changing" in m for m in messages)


def test_a_childs_events_pass_only_while_its_owner_is_unfinished() -> None:
    """The Jobs of finished or deleted Backtests cost no thread and no API call (issue 20: deleting
    1,000 Backtests was followed by 1,000 Job-deletion reconciles that found nothing to do)."""
    check = resync.owner_unfinished("Backtest", "unfinished_backtests")
    owned = {"metadata": {"ownerReferences": [{"kind": "Backtest", "name": "bt", "controller": True}]}}
    index = {("ns", "bt"): [1.0]}
    assert check(body=owned, namespace="ns", unfinished_backtests=index)
    assert not check(body=owned, namespace="other", unfinished_backtests=index)
    assert not check(body=owned, namespace="ns", unfinished_backtests={})  # finished or gone
    assert not check(body={"metadata": {}}, namespace="ns", unfinished_backtests=index)  # no owner
