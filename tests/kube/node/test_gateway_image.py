"""The IB Gateway image as the node agent runs it: the TWS peer as a process
(`python -m kubetrader.live.testing.gateway`), on the image's port for its TRADING_MODE."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from kubetrader.live.testing.gateway import parse_args
from tests.helpers import ROOT, free_port, wait_until
from tests.kube.node.images import known_images, resolve

GATEWAY = "ghcr.io/gnzsnz/ib-gateway@sha256:91165c0752ca534c0dad3c40683ae7c2745974d4d277651a90e90411ca609d8d"


def test_the_gateway_image_listens_where_the_images_socat_relay_would() -> None:
    assert parse_args([], {"TRADING_MODE": "paper"}).port == 4004
    assert parse_args([], {"TRADING_MODE": "live"}).port == 4003
    assert parse_args(["--port", "7497"], {"TRADING_MODE": "live"}).port == 7497
    image = resolve(GATEWAY, known_images())
    assert image.entrypoint == ("python", "-m", "kubetrader.live.testing.gateway")
    assert image.user == 1000  # the image's ibgateway user (operator: live/builders.py GATEWAY_USER)


@pytest.mark.parametrize(
    ("argv", "env", "problem"),
    [
        ([], {"TRADING_MODE": "demo"}, "TRADING_MODE: expected one of live, paper, got 'demo'"),
        (["--port", "0"], {}, "--port: expected 1..65535, got 0"),
        (["--bar-interval", "0"], {}, "--bar-interval: expected a positive number"),
        (["--replay-start", "ORCL"], {}, "expected SYMBOL=INDEX"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    argv: list[str], env: dict[str, str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(argv, env)
    assert caught.value.code == 2
    assert problem in capsys.readouterr().err


def test_the_gateway_process_serves_ib_insync_and_stops_on_sigterm() -> None:
    from ib_insync import IB, MarketOrder, Stock

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "kubetrader.live.testing.gateway", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "TRADING_MODE": "paper"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"TWS peer listening on 127.0.0.1:{port}"
        ib = IB()
        ib.connect("127.0.0.1", port, clientId=5, timeout=20)
        try:
            trade = ib.placeOrder(Stock("ORCL", "SMART", "USD"), MarketOrder("BUY", 3))
            wait_until(lambda: ib.sleep(0.05) and trade.isDone(), timeout=20, what="the BUY filled")
            assert trade.orderStatus.status == "Filled"
            assert [(p.contract.symbol, p.position) for p in ib.reqPositions()] == [("ORCL", 3.0)]
        finally:
            ib.disconnect()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_service_port_other_than_its_target_port_is_redirected_in_the_endpoint_pod() -> None:
    """The operator's gateway Service: port 4002 -> targetPort `api` (the container's 4004)."""
    from tests.kube.node.agent import port_redirects

    pod = {
        "metadata": {"namespace": "kt", "labels": {"app": "gw"}},
        "spec": {"containers": [{"ports": [{"name": "api", "containerPort": 4004}, {"containerPort": 5900}]}]},
    }

    def service(ns: str, selector: dict[str, str], ports: list[dict[str, object]]) -> dict[str, object]:
        return {"metadata": {"name": "s", "namespace": ns}, "spec": {"selector": selector, "ports": ports}}

    services = [
        service("kt", {"app": "gw"}, [{"port": 4002, "targetPort": "api"}, {"port": 5900, "targetPort": 5900}]),
        service(
            "kt", {"app": "gw"}, [{"port": 80, "targetPort": 5900, "protocol": "TCP"}, {"port": 9, "targetPort": "x"}]
        ),
        service("kt", {"app": "other"}, [{"port": 1, "targetPort": 2}]),
        service("elsewhere", {"app": "gw"}, [{"port": 3, "targetPort": 4}]),
    ]
    assert port_redirects(services, pod) == {("TCP", 4002, 4004), ("TCP", 80, 5900)}
