"""Pure LiveDeployment logic: manifests (checked against Kubernetes' schemas), status, promotion gate."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubetrader.specs.live import LiveDeploymentSpec, PromotionSpec
from kubetrader_operator.live.builders import STOP_FINALIZER, build_children, names
from kubetrader_operator.live.deputy import gateway_image
from kubetrader_operator.live.settings import DEFAULT_GATEWAY_IMAGE, LiveSettings, PodPeer
from kubetrader_operator.live.status import promotion_refusal, runner_unreachable_status, status_from_snapshot
from tests.helpers import EXAMPLES

PAPER = LiveDeploymentSpec.model_validate(yaml.safe_load((EXAMPLES / "live-paper.yaml").read_text())["spec"])
NOW = "2024-01-02T03:04:05Z"


OPERATOR = PodPeer(namespace="kubetrader", labels={"app.kubernetes.io/component": "operator"})
API = PodPeer(namespace="kubetrader", labels={"app.kubernetes.io/component": "api"})
SETTINGS = LiveSettings(operator_pod=OPERATOR, api_pod=API)


def children(spec: LiveDeploymentSpec = PAPER) -> dict[str, dict[str, Any]]:
    image = gateway_image(spec, SETTINGS.allowed_gateway_images)
    built = build_children(
        spec, "sma-paper", "trading", image="engine:1", gateway_image=image, runner_port=8080, token="t0ken",
        network=SETTINGS.network(),
    )  # fmt: skip
    return {
        m["kind"] + ("/runner" if m["metadata"]["name"].endswith(("-runner", "-runner-http")) else ""): m for m in built
    }


def test_every_child_is_valid_kubernetes_and_none_is_owned_by_the_live_deployment() -> None:
    for manifest in children().values():
        kubernetes_validate.validate(manifest, "1.37", strict=True)
        assert "ownerReferences" not in manifest["metadata"]
        assert manifest["metadata"]["labels"]["kubetrader.io/livedeployment"] == "sma-paper"


def test_gateway_takes_credentials_only_from_the_secret_and_trading_mode_from_the_spec() -> None:
    sts = children()["StatefulSet"]
    assert sts["metadata"]["finalizers"] == [STOP_FINALIZER]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["TRADING_MODE"]["value"] == "paper"
    for var, key in (("TWS_USERID", "username"), ("TWS_PASSWORD", "password")):
        assert env[var] == {"name": var, "valueFrom": {"secretKeyRef": {"name": "ib-paper-credentials", "key": key}}}
    assert "VNC_SERVER_PASSWORD" not in env and [p["containerPort"] for p in container["ports"]] == [4004]
    assert container["image"] == DEFAULT_GATEWAY_IMAGE  # the spec names none: the operator's first allowed one


def test_gateway_pod_is_non_root_without_added_capabilities() -> None:
    """#21 finding 3: it added SETUID/SETGID/CHOWN and had no runAsNonRoot; the image runs as uid 1000."""
    pod = children()["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    security = pod["containers"][0]["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_vnc_is_optional_and_live_mode_uses_the_live_relay_port() -> None:
    doc = PAPER.model_dump(by_alias=True)
    doc["gateway"]["vnc"] = True
    doc["mode"] = "live"
    doc["risk"] = {k: 0.5 for k in ("maxConcentration", "maxDailyLoss", "maxDrawdown")} | {
        "maxPositionSize": 100, "maxOrderNotional": 1000, "maxOrdersPerMinute": 5,
    }  # fmt: skip
    built = children(LiveDeploymentSpec.model_validate(doc))
    container = built["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in container["env"]}["TRADING_MODE"] == "live"
    assert [p["containerPort"] for p in container["ports"]] == [4003, 5900]
    service = built["Service"]
    assert service["spec"]["clusterIP"] == "None"
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("api", 4001), ("vnc", 5900)]


def test_runner_is_one_recreated_restricted_pod_with_the_token_from_the_operators_secret() -> None:
    built = children()
    runner = built["Deployment/runner"]
    assert runner["spec"]["replicas"] == 1 and runner["spec"]["strategy"] == {"type": "Recreate"}
    pod = runner["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    token_ref = env["KUBETRADER_RUNNER_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token_ref == {"name": "sma-paper-runner-token", "key": "token"}
    assert LiveDeploymentSpec.model_validate_json(env["KUBETRADER_LIVE_SPEC"]["value"]) == PAPER
    args = container["args"]
    assert args[:2] == ["live", "run"] and args[args.index("--host") + 1] == "sma-paper-gateway"
    assert args[args.index("--port") + 1] == "4002" and "--http-port" in args
    assert built["Secret"]["stringData"] == {"token": "t0ken"}


def test_network_policies_name_the_operators_namespace_and_isolate_both_pods_both_ways() -> None:
    operator = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubetrader"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
    }
    gateway = children()["NetworkPolicy"]["spec"]
    assert gateway["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = gateway["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 4004}]
    runner = {
        "podSelector": {
            "matchLabels": {"kubetrader.io/livedeployment": "sma-paper", "app.kubernetes.io/component": "runner"}
        }
    }
    assert rule["from"] == [runner, operator]
    ib = gateway["egress"][1]
    assert ib["ports"] == [{"protocol": "TCP", "port": 4000}, {"protocol": "TCP", "port": 4001}]
    assert ib["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in ib["to"][0]["ipBlock"]["except"]
    http = children()["NetworkPolicy/runner"]["spec"]
    assert http["policyTypes"] == ["Ingress", "Egress"]
    assert http["ingress"][0]["from"][0] == operator and len(http["ingress"][0]["from"]) == 2


def test_long_names_stay_deterministic_and_short_enough() -> None:
    long = "x" * 60
    assert names(long) == names(long)
    assert all(len(n) <= 63 for n in names(long).values())


SNAPSHOT = {
    "connected": True,
    "halted": None,
    "stopping": False,
    "finished": False,
    "pnl": 12.5,
    "equity": 100_012.5,
    "realized_pnl": 2.5,
    "unrealized_pnl": 10.0,
    "positions": {"ORCL": 100},
    "open_orders": [{"order_id": "kt-1", "symbol": "ORCL", "side": "BUY", "size": 10, "status": "working"}],
    "last_heartbeat": 1_704_164_645.0,
    "flat_confirmed_at": None,
}


def test_status_from_a_trading_runner() -> None:
    s = status_from_snapshot(SNAPSHOT, [], generation=3, now=NOW)
    assert s["phase"] == "Trading" and s["connected"] is True and s["openOrders"] == 1
    assert s["positions"] == {"ORCL": 100} and s["pnl"] == 12.5 and s["lastHeartbeat"] == "2024-01-02T03:04:05Z"
    by_type = {c["type"]: c for c in s["conditions"]}
    assert by_type["Connected"]["status"] == "True" and by_type["Trading"]["observedGeneration"] == 3


def test_status_halted_and_unreachable_runner_never_invent_numbers() -> None:
    halted = status_from_snapshot(SNAPSHOT | {"halted": "kill switch"}, [], generation=1, now=NOW)
    assert halted["phase"] == "Halted" and halted["haltReason"] == "kill switch"
    gone = runner_unreachable_status(halted["conditions"], "connection refused", generation=1, now=NOW)
    assert gone["connected"] is False and "positions" not in gone and "pnl" not in gone
    assert {c["type"]: c["status"] for c in gone["conditions"]}["Trading"] == "False"


def backtest(phase: str = "Succeeded", **metrics: float) -> dict[str, Any]:
    return {"status": {"phase": phase, "metrics": metrics}}


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (None, "not found"),
        (backtest("Running"), "is Running, not Succeeded"),
        (backtest(sharpeRatio=0.8, maxDrawdown=-0.1), "Sharpe 0.80 is below the minimum 1.00"),
        (backtest(sharpeRatio=1.5, maxDrawdown=-0.3), "max drawdown 30.00% exceeds 20.00%"),
        (backtest(maxDrawdown=-0.1), "has no Sharpe ratio"),
        (backtest(sharpeRatio=1.2, maxDrawdown=-0.15), None),
    ],
)
def test_promotion_gate(found: dict[str, Any] | None, expected: str | None) -> None:
    refusal = promotion_refusal(PromotionSpec(from_backtest="sma-orcl", min_sharpe=1.0, max_drawdown=0.2), found)
    assert refusal == expected if expected is None else (refusal is not None and expected in refusal)


def test_the_hung_runner_deadline_is_a_setting_and_the_runners_fence_themselves_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert LiveSettings().runner_stall_fence_seconds == 60.0  # the default matches the runner's own
    monkeypatch.setenv("KUBETRADER_OPERATOR_LIVE_HUNG_RUNNER_DEADLINE_SECONDS", "30")
    settings = LiveSettings(operator_pod=OPERATOR, api_pod=API)
    assert settings.hung_runner_deadline_seconds == 30.0 and settings.runner_stall_fence_seconds == 20.0
    built = build_children(
        PAPER, "sma-paper", "trading", image="engine:1", gateway_image=DEFAULT_GATEWAY_IMAGE, runner_port=8080,
        token="t0ken", network=settings.network(), stall_fence=settings.runner_stall_fence_seconds,
    )  # fmt: skip
    runner = next(m for m in built if m["kind"] == "Deployment")
    args = runner["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--stall-fence") + 1] == "20"
    monkeypatch.setenv("KUBETRADER_OPERATOR_LIVE_HUNG_RUNNER_DEADLINE_SECONDS", "0")
    with pytest.raises(ValueError, match="hung_runner_deadline_seconds"):
        LiveSettings()
