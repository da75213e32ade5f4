"""The real operator (kopf, in-process) against the emulated API, with the TWS peer as the IB Gateway.

No runner pod runs here (there is no kubelet for Deployments), so the runner's
endpoint is unreachable and every stop goes the hard way: directly to the gateway
with the operator's own client id. That is the path that must hold when it matters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from kubetrader.live.broker import OrderRequest
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.testing.tws_peer import TwsPeer
from kubetrader.specs.live import LiveDeploymentSpec
from tests.fixtures.live import paper_credentials_secret
from tests.helpers import EXAMPLES, free_port, wait_until
from tests.kube.cluster import EmulatedCluster

NS = "trading"
NAME = "sma-paper"
GATEWAY = f"{NAME}-gateway"
RUNNER = f"{NAME}-runner"
FINALIZER = "kubetrader.io/live-stop"
CREDENTIALS = "ib-paper-credentials"

pytestmark = pytest.mark.slow


@pytest.fixture
def operator_chart_values() -> dict[str, Any]:
    """The operator runs under the chart's RBAC with live trading on, watching this namespace, and
    allowed to read the one credentials Secret the example names (and no other Secret)."""
    return {"live": {"enabled": True}, "operator": {"watchNamespaces": [NS], "readableSecrets": [CREDENTIALS]}}


@pytest.fixture
def live_env(
    kube_cluster: EmulatedCluster, tws_peer: TwsPeer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EmulatedCluster]:
    from kubetrader_operator.live.settings import get_live_settings

    monkeypatch.setenv("KUBETRADER_OPERATOR_LIVE_GATEWAY_ADDRESS", f"127.0.0.1:{tws_peer.port}")
    monkeypatch.setenv("KUBETRADER_OPERATOR_LIVE_RUNNER_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("KUBETRADER_OPERATOR_LIVE_FLATTEN_WAIT_SECONDS", "10")
    monkeypatch.setenv("KUBETRADER_OPERATOR_LIVE_HTTP_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("KUBETRADER_OPERATOR_LIVE_REFUSAL_RETRY_SECONDS", "0.5")
    get_live_settings.cache_clear()
    kube_cluster.create(credentials_secret())
    yield kube_cluster
    get_live_settings.cache_clear()


def credentials_secret(opt_in: str | None = NAME) -> dict[str, Any]:
    return paper_credentials_secret(NS, opt_in)


def live_deployment() -> dict[str, Any]:
    doc = copy.deepcopy(yaml.safe_load((EXAMPLES / "live-paper.yaml").read_text()))
    doc["metadata"] = {"name": NAME, "namespace": NS}
    doc["spec"]["stopPolicy"]["retrySeconds"] = 0.5
    doc["spec"]["stopPolicy"]["scope"] = "account"  # the book below holds NVDA, which the strategy does not trade
    return doc


def open_book(peer: TwsPeer) -> None:
    """Three resting orders from the runner's client id, and positions long and short."""
    peer.seed_position("ORCL", 100)
    peer.seed_position("NVDA", -50)
    trader = IBBroker("127.0.0.1", peer.port, 1, timeout=5)
    trader.connect()
    for i in range(3):
        trader.place_order(OrderRequest(f"kt-rest-{i}", "ORCL", "BUY", 10, "LMT", 1.0))
    wait_until(lambda: (trader.poll(0.01), len(peer.open_orders()) == 3)[1], what="orders resting at the peer")
    trader.disconnect()


def events(cluster: EmulatedCluster, reason: str) -> list[dict[str, Any]]:
    return [e for e in cluster.select("Event", NS) if e.get("reason") == reason]


def condition(cluster: EmulatedCluster, type_: str) -> dict[str, Any] | None:
    obj = cluster.get("LiveDeployment", NS, NAME) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def test_delete_cancels_orders_and_flattens_positions_before_the_finalizer_goes(
    live_env: EmulatedCluster, tws_peer: TwsPeer, operator_runner: Callable[[], Any]
) -> None:
    open_book(tws_peer)
    with operator_runner():
        live_env.create(live_deployment())
        gateway = wait_until(lambda: live_env.get("StatefulSet", NS, GATEWAY), timeout=20, what="the gateway")
        assert gateway is not None
        assert FINALIZER in gateway["metadata"]["finalizers"]
        assert not gateway["metadata"].get("ownerReferences")
        assert wait_until(lambda: live_env.get("Deployment", NS, RUNNER), what="the runner")
        assert tws_peer.positions() == {"ORCL": 100, "NVDA": -50}

        live_env.delete("LiveDeployment", NS, NAME)
        wait_until(lambda: live_env.get("LiveDeployment", NS, NAME) is None, timeout=30, what="the finalizer to go")

        assert tws_peer.open_orders() == []
        assert tws_peer.positions() == {}
        confirmed = events(live_env, "EmergencyStopConfirmed")
        assert confirmed and "flat confirmed via gateway" in confirmed[-1]["message"]
        assert "runner unreachable" in confirmed[-1]["message"]
        wait_until(lambda: live_env.get("StatefulSet", NS, GATEWAY) is None, what="the gateway released")
        assert live_env.get("Deployment", NS, RUNNER) is None


def test_delete_under_the_default_strategy_scope_keeps_what_the_strategy_does_not_trade_and_says_so(
    live_env: EmulatedCluster, tws_peer: TwsPeer, operator_runner: Callable[[], Any]
) -> None:
    open_book(tws_peer)  # ORCL (traded) and NVDA (not), with orders resting
    doc = live_deployment()
    del doc["spec"]["stopPolicy"]["scope"]  # the default: strategy
    with operator_runner():
        live_env.create(doc)
        wait_until(lambda: live_env.get("StatefulSet", NS, GATEWAY), timeout=20, what="the gateway")
        live_env.delete("LiveDeployment", NS, NAME)
        wait_until(lambda: live_env.get("LiveDeployment", NS, NAME) is None, timeout=30, what="the finalizer to go")
    assert tws_peer.positions() == {"NVDA": -50}  # left alone, not the strategy's
    assert tws_peer.open_orders() == []  # orders are cancelled account-wide either way
    assert [o.instrument.symbol for o in tws_peer.orders() if not o.order_ref.startswith("kt-rest")] == ["ORCL"]
    confirmed = events(live_env, "EmergencyStopConfirmed")
    assert confirmed and "out of scope and kept" in confirmed[-1]["message"] and "NVDA" in confirmed[-1]["message"]


def test_delete_with_the_gateway_down_stays_terminating_with_an_alert_until_the_gateway_returns(
    live_env: EmulatedCluster, tws_peer: TwsPeer, operator_runner: Callable[[], Any]
) -> None:
    open_book(tws_peer)
    with operator_runner():
        live_env.create(live_deployment())
        wait_until(lambda: live_env.get("StatefulSet", NS, GATEWAY), timeout=20, what="the gateway")
        tws_peer.set_down(True)
        live_env.delete("LiveDeployment", NS, NAME)

        blocked = wait_until(
            lambda: (c := condition(live_env, "StopBlocked")) and c["status"] == "True" and c, timeout=20,
            what="the StopBlocked alert",
        )  # fmt: skip
        assert blocked
        assert "NOT FLAT" in blocked["message"] and "unreachable" in blocked["message"]
        wait_until(lambda: len(events(live_env, "EmergencyStopBlocked")) >= 2, timeout=20, what="retries")
        obj = live_env.get("LiveDeployment", NS, NAME)
        assert obj is not None and obj["metadata"].get("deletionTimestamp")
        assert obj["status"]["phase"] == "Stopping"
        assert live_env.get("StatefulSet", NS, GATEWAY) is not None  # still there to stop through
        assert tws_peer.positions() == {"ORCL": 100, "NVDA": -50}

        tws_peer.set_down(False)
        wait_until(lambda: live_env.get("LiveDeployment", NS, NAME) is None, timeout=30, what="the stop to complete")
        assert tws_peer.open_orders() == [] and tws_peer.positions() == {}
        # kopf posts events from its own queue, after the patch that a wait above saw
        wait_until(
            lambda: events(live_env, "EmergencyStopConfirmed"), timeout=20, what="the EmergencyStopConfirmed event"
        )


def test_foreground_cascade_cannot_take_the_gateway_before_the_stop_is_confirmed(
    live_env: EmulatedCluster, tws_peer: TwsPeer, operator_runner: Callable[[], Any]
) -> None:
    tws_peer.seed_position("ORCL", 100)
    with operator_runner():
        live_env.create(live_deployment())
        wait_until(lambda: live_env.get("Deployment", NS, RUNNER), timeout=20, what="the children")
        tws_peer.set_down(True)
        live_env.delete("LiveDeployment", NS, NAME)
        wait_until(lambda: condition(live_env, "StopBlocked"), timeout=20, what="the stop to be blocked")
        # What foreground deletion's garbage collector (or a hasty kubectl) does to the children:
        live_env.collect_garbage()
        live_env.delete("StatefulSet", NS, GATEWAY)
        live_env.delete("Deployment", NS, RUNNER)
        gateway = live_env.get("StatefulSet", NS, GATEWAY)
        assert gateway is not None and gateway["metadata"].get("deletionTimestamp")  # kept by our finalizer
        assert live_env.get("Deployment", NS, RUNNER) is not None

        tws_peer.set_down(False)
        wait_until(lambda: live_env.get("LiveDeployment", NS, NAME) is None, timeout=30, what="the stop")
        assert tws_peer.positions() == {}
        wait_until(lambda: live_env.get("StatefulSet", NS, GATEWAY) is None, what="the gateway released")


def test_a_runner_connected_but_unreachable_keeps_the_flattener_slot_and_the_operator_sends_nothing(
    live_env: EmulatedCluster, tws_peer: TwsPeer, operator_runner: Callable[[], Any]
) -> None:
    """Two flatteners on one account ran away; the runner's client id at the gateway fences them."""
    tws_peer.seed_position("ORCL", 100)
    runner = IBBroker("127.0.0.1", tws_peer.port, 1, timeout=5)  # the runner's client id, its HTTP unreachable
    runner.connect()
    try:
        with operator_runner():
            live_env.create(live_deployment())
            wait_until(lambda: live_env.get("StatefulSet", NS, GATEWAY), timeout=20, what="the gateway")
            live_env.delete("LiveDeployment", NS, NAME)
            blocked = wait_until(lambda: events(live_env, "EmergencyStopBlocked"), timeout=30, what="blocked")
            assert "holds the flattener slot" in blocked[-1]["message"]
            assert [o for o in tws_peer.orders() if o.order_ref.startswith("kt-ostop")] == []
            assert tws_peer.positions() == {"ORCL": 100}
            runner.disconnect()  # the runner dies: the slot is free, the operator flattens
            wait_until(lambda: live_env.get("LiveDeployment", NS, NAME) is None, timeout=30, what="the finalizer")
        assert tws_peer.positions() == {} and tws_peer.open_orders() == []
        assert sum(1 for o in tws_peer.orders() if o.order_ref.startswith("kt-ostop")) == 1
    finally:
        runner.disconnect()


def test_closes_the_broker_rejects_block_the_stop_with_its_reason_in_the_condition_and_events(
    live_env: EmulatedCluster, tws_peer: TwsPeer, operator_runner: Callable[[], Any]
) -> None:
    from kubetrader.live.testing.faults import RejectRule

    tws_peer.seed_position("ORCL", 100)
    tws_peer.faults.rejects.append(RejectRule(201, symbol="ORCL"))
    with operator_runner():
        live_env.create(live_deployment())
        wait_until(lambda: live_env.get("StatefulSet", NS, GATEWAY), timeout=20, what="the gateway")
        live_env.delete("LiveDeployment", NS, NAME)
        blocked = wait_until(lambda: events(live_env, "EmergencyStopBlocked"), timeout=30, what="blocked")
        assert "201" in blocked[-1]["message"] and "Order rejected" in blocked[-1]["message"]
        stop_blocked = wait_until(lambda: condition(live_env, "StopBlocked"), what="the StopBlocked condition")
        assert stop_blocked["reason"] == "FlattenRejected" and "201" in stop_blocked["message"]
        assert live_env.get("LiveDeployment", NS, NAME) is not None  # the finalizer stays
        attempts = len([o for o in tws_peer.orders() if o.order_ref.startswith("kt-ostop")])
        assert 1 <= attempts <= 4 * len(events(live_env, "EmergencyStopBlocked"))  # bounded per attempt
        tws_peer.faults.rejects.clear()  # the broker accepts again: the next attempt confirms
        wait_until(lambda: live_env.get("LiveDeployment", NS, NAME) is None, timeout=40, what="the finalizer")
    assert tws_peer.positions() == {}


def test_a_gateway_image_outside_the_allow_list_is_refused_with_a_failed_condition(
    live_env: EmulatedCluster, operator_runner: Callable[[], Any]
) -> None:
    """#21 finding 3: any image could receive the IB credentials."""
    doc = live_deployment()
    doc["spec"]["gateway"]["image"] = "evil.example/ib-gateway@sha256:" + "0" * 64
    with operator_runner():
        live_env.create(doc)
        failed = wait_until(lambda: condition(live_env, "Failed"), timeout=20, what="the Failed condition")
        assert failed["status"] == "True" and failed["reason"] == "ImageNotAllowed"
        assert "evil.example" in failed["message"] and "allowed gateway images" in failed["message"]
        assert (live_env.get("LiveDeployment", NS, NAME) or {})["status"]["phase"] == "Failed"
        assert live_env.get("StatefulSet", NS, GATEWAY) is None and live_env.get("Deployment", NS, RUNNER) is None


def opt_in(cluster: EmulatedCluster, names: str) -> None:
    patch = {"metadata": {"annotations": {"kubetrader.io/live-deployments": names}}}
    cluster.patch("Secret", NS, "ib-paper-credentials", patch)


def test_a_credentials_secret_that_does_not_opt_in_is_refused_until_it_names_the_deployment(
    live_env: EmulatedCluster, operator_runner: Callable[[], Any]
) -> None:
    """#21 finding 3: any Secret of the namespace could be injected into the gateway."""
    opt_in(live_env, "other")
    with operator_runner():
        live_env.create(live_deployment())
        failed = wait_until(lambda: condition(live_env, "Failed"), timeout=60, what="the Failed condition")
        assert failed["reason"] == "CredentialsNotAllowed"
        assert "does not opt in to LiveDeployment sma-paper" in failed["message"]
        assert "kubetrader.io/live-deployments=sma-paper" in failed["message"]
        assert live_env.get("StatefulSet", NS, GATEWAY) is None
        opt_in(live_env, f"other,{NAME}")
        assert wait_until(lambda: live_env.get("StatefulSet", NS, GATEWAY), timeout=60, what="the gateway")
        cleared = wait_until(
            lambda: (c := condition(live_env, "Failed")) and c["status"] == "False" and c, timeout=60, what="Failed off"
        )
        assert cleared["reason"] == "ChildrenCreated"


def runner_spec(cluster: EmulatedCluster) -> tuple[LiveDeploymentSpec, str | None]:
    """The spec (and its generation) the runner's pod template hands to `kubetrader live run`."""
    runner = cluster.get("Deployment", NS, RUNNER) or {}
    template = runner["spec"]["template"]
    env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
    generation = (template["metadata"].get("annotations") or {}).get("kubetrader.io/spec-generation")
    return LiveDeploymentSpec.model_validate_json(env["KUBETRADER_LIVE_SPEC"] or ""), generation


def test_a_risk_edit_rolls_the_runner_with_the_new_limits_and_the_status_says_which_generation_runs(
    live_env: EmulatedCluster, operator_runner: Callable[[], Any]
) -> None:
    """#15: `maxPositionSize` 100 -> 1 left the running runner unchanged while the resource showed 1."""
    with operator_runner():
        live_env.create(live_deployment())
        wait_until(lambda: live_env.get("Deployment", NS, RUNNER), timeout=20, what="the runner")
        spec, generation = runner_spec(live_env)
        assert spec.risk.max_position_size == 100 and generation == "1"
        live_env.patch("LiveDeployment", NS, NAME, {"spec": {"risk": {"maxPositionSize": 1}}})
        wait_until(lambda: runner_spec(live_env)[1] == "2", timeout=20, what="the runner rolled to generation 2")
        spec, _ = runner_spec(live_env)
        assert spec.risk.max_position_size == 1  # the limit the new runner's risk engine enforces
        # runningGeneration can reach 2 (read from the rolled Deployment) a patch before the
        # SpecApplied condition does: wait for both.
        status_ = wait_until(
            lambda: (s := (live_env.get("LiveDeployment", NS, NAME) or {}).get("status") or {})
            and s.get("runningGeneration") == 2 and (c := condition(live_env, "SpecApplied"))
            and c["status"] == "True" and "generation 2" in c["message"] and s,
            timeout=60, what="status.runningGeneration 2 and SpecApplied for generation 2",
        )  # fmt: skip
        assert status_["observedGeneration"] == 2
        # kopf posts events from its own queue, after the patch that a wait above saw
        wait_until(lambda: events(live_env, "RunnerRolled"), timeout=20, what="the RunnerRolled event")


def test_an_edit_with_on_update_flatten_closes_the_positions_before_the_runner_restarts(
    live_env: EmulatedCluster, tws_peer: TwsPeer, operator_runner: Callable[[], Any]
) -> None:
    tws_peer.seed_position("ORCL", 100)
    doc = live_deployment()
    doc["spec"]["stopPolicy"]["onUpdate"] = "flatten"
    with operator_runner():
        live_env.create(doc)
        wait_until(lambda: live_env.get("Deployment", NS, RUNNER), timeout=20, what="the runner")
        tws_peer.set_down(True)
        live_env.patch("LiveDeployment", NS, NAME, {"spec": {"risk": {"maxPositionSize": 1}}})
        blocked = wait_until(
            lambda: (c := condition(live_env, "SpecApplied")) and c["reason"] == "RollBlocked" and c, timeout=20,
            what="the roll blocked while the gateway is down",
        )  # fmt: skip
        assert "NOT FLAT" in blocked["message"] and runner_spec(live_env)[1] == "1"  # the old spec still runs
        tws_peer.set_down(False)
        wait_until(lambda: runner_spec(live_env)[1] == "2", timeout=30, what="the roll after the flatten")
        assert tws_peer.positions() == {}


def test_a_gateway_policy_left_by_an_older_operator_is_brought_up_to_date(
    live_env: EmulatedCluster, operator_runner: Callable[[], Any]
) -> None:
    """#21 finding 4: the old policy admitted a label from any namespace; a restart must not keep it."""
    spoofable = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{NAME}-gateway-api", "namespace": NS},
        "spec": {
            "podSelector": {
                "matchLabels": {"kubetrader.io/livedeployment": NAME, "app.kubernetes.io/component": "gateway"}
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kubetrader-operator"}},
                        }
                    ]
                }
            ],
        },
    }
    live_env.create(spoofable)
    with operator_runner():
        live_env.create(live_deployment())

        def replaced() -> dict[str, Any] | None:
            policy = live_env.get("NetworkPolicy", NS, f"{NAME}-gateway-api")
            return policy if policy and "Egress" in policy["spec"]["policyTypes"] else None

        updated = wait_until(replaced, timeout=30, what="the policy replaced")
        peers = updated["spec"]["ingress"][0]["from"]
        assert all(peer.get("namespaceSelector") != {} for peer in peers)
        # kopf posts events from its own queue, after the patch that a wait above saw
        wait_until(lambda: events(live_env, "Updated"), timeout=20, what="the Updated event")


def test_a_burst_of_backtests_never_holds_up_a_live_deployment_or_its_emergency_stop(
    live_env: EmulatedCluster, tws_peer: TwsPeer, operator_runner: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20: Backtests' handlers ran in kopf's executor (8 threads), the LiveDeployments' too, so a
    burst of Backtests whose API work was slow queued a LiveDeployment's create and emergency stop
    behind it. Their work now runs in threads of its own (kubetrader_operator.workqueue)."""
    import threading

    from kubetrader_operator import kube

    burst = 9  # more than kopf's executor has threads (main.configure)
    entered: list[str] = []
    released = threading.Event()
    create_if_absent = kube.create_if_absent

    def slow_create(manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """A Backtest's child create that takes until the test says (an API server under load)."""
        entered.append(manifest["metadata"]["name"])
        if not released.wait(60):
            raise TimeoutError("the test never released the Backtests")
        return create_if_absent(manifest)

    monkeypatch.setattr(kube, "create_if_absent", slow_create)
    backtest = yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())
    open_book(tws_peer)
    with operator_runner():
        try:
            for i in range(burst):
                live_env.create({**backtest, "metadata": {"name": f"burst-{i}", "namespace": NS}})
            wait_until(lambda: len(entered) >= 4, timeout=20, what="Backtests' work under way")
            live_env.create(live_deployment())
            assert wait_until(lambda: live_env.get("StatefulSet", NS, GATEWAY), timeout=20, what="the gateway")
            assert wait_until(lambda: live_env.get("Deployment", NS, RUNNER), timeout=20, what="the runner")
            live_env.delete("LiveDeployment", NS, NAME)
            wait_until(lambda: live_env.get("LiveDeployment", NS, NAME) is None, timeout=30, what="the stop")
            assert tws_peer.positions() == {} and tws_peer.open_orders() == []
            assert not any(live_env.get("Job", NS, f"bt-burst-{i}") for i in range(burst))  # still held
        finally:
            released.set()
        for i in range(burst):
            wait_until(lambda: live_env.get("Job", NS, f"bt-burst-{i}"), timeout=30, what=f"the Job of burst-{i}")  # noqa: B023
