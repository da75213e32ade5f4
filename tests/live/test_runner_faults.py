"""The runner process when the world goes wrong: the gateway stays down, the runner itself hangs.

Issue #14's leftovers, with real `kubetrader live run` processes and the real ib_insync
client against the TWS peer: a runner whose gateway stays down past its deadline exits
3 with a report (not a runner that retries forever in silence), and a runner that is
connected but hung does not block the operator's emergency stop, without ever letting
two processes flatten one account.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from kubetrader.live.http import RunnerUnreachableError, call_runner
from kubetrader.live.testing.tws_peer import TwsPeer
from tests.helpers import ROOT, free_port, wait_until


def start_runner(peer: TwsPeer, tmp_path: Path, *extra: str, client_id: int = 1) -> tuple[subprocess.Popen[str], str]:
    http_port = free_port()
    runner = subprocess.Popen(
        [sys.executable, "-m", "kubetrader.cli.main", "live", "run", "--strategy",
         "strategies.sma_crossover.SMACrossover", "--symbols", "ORCL", "--port", str(peer.port),
         "--client-id", str(client_id), "--http-port", str(http_port), "--insecure-local",
         "--journal-url", f"sqlite:///{tmp_path / 'journal.db'}", "--deployment", "faults", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={"PYTHONPATH": f"{ROOT / 'engine'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"

    def connected() -> bool:
        if runner.poll() is not None:
            raise AssertionError(f"the runner exited {runner.returncode}: {runner.communicate()[1][-3000:]}")
        return bool(call_runner(url, "/status", token=None).get("connected"))

    wait_until(connected, timeout=60, what="the runner", retry_on=(RunnerUnreachableError,))
    return runner, url


def test_a_runner_whose_gateway_stays_down_past_its_deadline_exits_3_with_a_report(
    tws_peer: TwsPeer, tmp_path: Path
) -> None:
    runner, _ = start_runner(tws_peer, tmp_path, "--gateway-deadline", "3")
    try:
        tws_peer.set_down(True)
        out, err = runner.communicate(timeout=90)
    finally:
        runner.kill()
        runner.wait(10)
    assert runner.returncode == 3, err[-3000:]
    assert "GATEWAY DOWN" in err and "Traceback" not in err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["connected"] is False and report["finished"] is False


def test_a_hung_runner_does_not_block_the_operators_stop_and_is_fenced_when_it_wakes(
    tws_peer: TwsPeer, tmp_path: Path
) -> None:
    """SIGSTOP the runner (its socket stays open, its client id stays taken, HTTP is silent): the
    operator falls back to its own client id after the deadline and flattens; the runner, woken
    up mid-flatten, sends nothing more (it fences itself after a stall longer than its limit)."""
    from kubetrader_operator.live.stopping import stop_everything

    tws_peer.seed_position("ORCL", 300)
    tws_peer.halt("ORCL")  # the runner's close rests: it is mid-flatten when it hangs
    runner, url = start_runner(tws_peer, tmp_path, "--stall-fence", "2")
    try:
        call_runner(url, "/flatten?wait=0", token=None, method="POST")
        wait_until(lambda: [o for o in tws_peer.open_orders() if o.order_ref.startswith("kt-flat")], what="its close")
        runner.send_signal(signal.SIGSTOP)
        common = {"runner_url": url, "token": None, "gateway_host": "127.0.0.1", "gateway_port": tws_peer.port,
                  "client_id": 999, "wait": 8, "http_timeout": 1, "flatten": True, "runner_client_id": 1,
                  "scope": "strategy", "owned": frozenset({"ORCL"}), "hung_deadline": 4}  # fmt: skip
        first = stop_everything(**common)  # type: ignore[arg-type]
        assert not first.flat and "hung" in first.message, first  # before the deadline: not acting
        assert tws_peer.positions() == {"ORCL": 300}

        def lift_the_halt_once_the_runners_close_is_cancelled() -> None:
            wait_until(lambda: not [o for o in tws_peer.open_orders() if o.order_ref.startswith("kt-flat")],
                       timeout=60, what="the hung runner's close cancelled by the takeover")  # fmt: skip
            tws_peer.halt("ORCL", False)

        lifter = threading.Thread(target=lift_the_halt_once_the_runners_close_is_cancelled, daemon=True)
        lifter.start()
        outcome = wait_until(lambda: (o := stop_everything(**common)).flat and o, timeout=60,  # type: ignore[arg-type]
                             interval=0.5, what="the operator's takeover")  # fmt: skip
        lifter.join(5)
        sent_before_wake = len(tws_peer.place_orders_received)
        runner.send_signal(signal.SIGCONT)
        wait_until(lambda: call_runner(url, "/status", token=None).get("fenced"), timeout=30, what="self-fence",
                   retry_on=(RunnerUnreachableError,))  # fmt: skip
        status = call_runner(url, "/status", token=None)
    finally:
        runner.send_signal(signal.SIGCONT)
        runner.kill()
        runner.wait(10)
    assert outcome.flat and "own client id" in outcome.summary(), outcome
    assert tws_peer.holdings() == {} and tws_peer.open_orders() == []
    assert len(tws_peer.place_orders_received) == sent_before_wake  # the woken runner sent nothing
    assert status["trading_state"] == "HALTED" and "stalled" in status["fenced"]
    sold = sum(e.shares for e in tws_peer.executions() if e.order.action == "SELL")
    assert sold == 300  # the hung runner's close was cancelled, not filled beside the operator's
