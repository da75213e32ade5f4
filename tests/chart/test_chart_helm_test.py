"""`helm test` cleans up after itself: its Backtest is deleted, pass or fail, and its ServiceAccount
may delete that one Backtest and nothing else (issue 23: every `helm test` left a labelled Backtest).

The chart's test hooks (ServiceAccount, Role, RoleBinding, Pod) are rendered with the real Helm
engine and the RBAC objects installed in the emulated API (authentication and RBAC as
kube-apiserver's: tests/kube/README.md); files/helm-test.py runs with the Pod's own environment
against a stand-in for the kubetrader API (which creates the Backtest, as the real API does) and,
as the Pod's ServiceAccount, against the emulated Kubernetes API.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.fixtures.chart import CHART_DIR, NAMESPACE, RenderedChart
from tests.helpers import EXAMPLES
from tests.kube import authn
from tests.kube.cluster import EmulatedCluster

NAME = "kubetrader-helm-test"


def _hooks(chart: RenderedChart) -> dict[str, dict[str, Any]]:
    kinds = {"ServiceAccount", "Role", "RoleBinding", "Pod", "ConfigMap"}
    found = {d["kind"]: d for d in chart.documents if d["metadata"]["name"] == NAME and d["kind"] in kinds}
    assert set(found) == kinds
    return found


def test_every_helm_test_object_is_a_test_hook_deleted_when_the_test_passes(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    hooks = _hooks(rendered_chart_scenarios["default"])
    for kind, doc in hooks.items():
        annotations = doc["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "test", kind
        assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {"before-hook-creation", "hook-succeeded"}
    weights = {kind: int(doc["metadata"]["annotations"].get("helm.sh/hook-weight", "0")) for kind, doc in hooks.items()}
    assert max(weights[k] for k in ("ServiceAccount", "Role", "RoleBinding")) < weights["Pod"]  # RBAC first


def test_the_helm_test_role_reaches_only_its_own_backtest(rendered_chart_scenarios: dict[str, RenderedChart]) -> None:
    hooks = _hooks(rendered_chart_scenarios["default"])
    pod = hooks["Pod"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert hooks["Role"]["rules"] == [
        {
            "apiGroups": ["kubetrader.io"],
            "resources": ["backtests"],
            "resourceNames": [env["KUBETRADER_TEST_BACKTEST"]],
            "verbs": ["get", "delete"],
        }
    ]
    assert pod["serviceAccountName"] == NAME and pod["automountServiceAccountToken"] is True
    assert hooks["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]


class FakeApi:
    """The kubetrader API as the script sees it: POST creates the Backtest in the cluster (as the
    API's ServiceAccount would), GET lists it with the phase the test chose."""

    def __init__(self, cluster: EmulatedCluster, phase: str) -> None:
        self.cluster, self.phase, self.posted = cluster, phase, []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                document = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.posted.append(document)
                api.cluster.create(document, namespace=NAMESPACE)
                self._answer({"name": document["metadata"]["name"], "state": "submitted"})

            def do_GET(self) -> None:
                items = [{"name": p["metadata"]["name"], "phase": api.phase} for p in api.posted]
                self._answer({"items": items})

            def _answer(self, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def installed(
    rendered_chart_scenarios: dict[str, RenderedChart], kube_cluster: EmulatedCluster
) -> tuple[dict[str, str], str]:
    """The chart's helm-test RBAC in the cluster; (the Pod's plain env, its ServiceAccount token)."""
    hooks = _hooks(rendered_chart_scenarios["default"])
    kube_cluster.apply([hooks["ServiceAccount"], hooks["Role"], hooks["RoleBinding"]], NAMESPACE)
    env = {e["name"]: e["value"] for e in hooks["Pod"]["spec"]["containers"][0]["env"] if "value" in e}
    return env, kube_cluster.token_for(authn.service_account(NAMESPACE, NAME))


def load_script(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], api_url: str) -> ModuleType:
    for key, value in {**env, "KUBETRADER_API_URL": api_url, "KUBETRADER_API_TOKEN": "t"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KUBETRADER_TEST_TIMEOUT", "20")
    spec = importlib.util.spec_from_file_location("helm_test_script", CHART_DIR / "files" / "helm-test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def other_backtest(cluster: EmulatedCluster, name: str) -> None:
    doc = yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": NAMESPACE}
    cluster.create(doc, namespace=NAMESPACE)


@pytest.fixture
def api_for(kube_cluster: EmulatedCluster) -> Iterator[Any]:
    servers: list[FakeApi] = []

    def make(phase: str) -> FakeApi:
        servers.append(FakeApi(kube_cluster, phase))
        return servers[-1]

    yield make
    for api in servers:
        api.server.shutdown()
        api.server.server_close()


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_helm_test_deletes_its_backtest_pass_or_fail_and_nothing_else(
    installed: tuple[dict[str, str], str],
    kube_cluster: EmulatedCluster,
    api_for: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    phase: str,
) -> None:
    env, token = installed
    name = env["KUBETRADER_TEST_BACKTEST"]
    api = api_for(phase)
    script = load_script(monkeypatch, env, api.url)
    other_backtest(kube_cluster, "someone-elses")
    other_backtest(kube_cluster, name)  # a leftover of a killed run: deleted before submitting again
    kube = script.Kube(kube_cluster.url, token, NAMESPACE)
    if phase == "Succeeded":
        script.backtest(kube)
    else:
        with pytest.raises(SystemExit) as exited:
            script.backtest(kube)
        assert exited.value.code == 1
    out = capsys.readouterr().out
    assert [p["metadata"]["name"] for p in api.posted] == [name]  # submitted through the API
    assert api.posted[0]["metadata"]["labels"] == {"kubetrader.io/helm-test": "true"}
    assert out.count(f"ok   Backtest {name} deleted") == 2, out  # the leftover, then its own
    assert (f"ok   Backtest {name} Succeeded" in out) == (phase == "Succeeded"), out
    assert kube_cluster.get("Backtest", NAMESPACE, name) is None
    assert kube_cluster.get("Backtest", NAMESPACE, "someone-elses") is not None


def test_the_helm_test_service_account_cannot_delete_another_backtest(
    installed: tuple[dict[str, str], str],
    kube_cluster: EmulatedCluster,
    api_for: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env, token = installed
    script = load_script(monkeypatch, env, api_for("Succeeded").url)
    other_backtest(kube_cluster, "someone-elses")
    with pytest.raises(SystemExit):
        script.delete_backtest(script.Kube(kube_cluster.url, token, NAMESPACE), "someone-elses")
    assert "HTTP 403" in capsys.readouterr().out
    assert kube_cluster.get("Backtest", NAMESPACE, "someone-elses") is not None


def test_in_cluster_reads_the_mounted_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Pod uses: the kubelet's KUBERNETES_SERVICE_HOST/PORT and the mounted token files."""
    for key, value in {"KUBETRADER_API_URL": "http://api", "KUBETRADER_API_TOKEN": "t"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KUBETRADER_TEST_BACKTEST", "helm-test-1")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    authn.write_service_account_files(tmp_path, "secret-token", NAMESPACE, b"CA")
    spec = importlib.util.spec_from_file_location("helm_test_script", CHART_DIR / "files" / "helm-test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kube = module.in_cluster(str(tmp_path))
    assert (kube.url, kube.token, kube.namespace) == ("https://[fd00::1]:443", "secret-token", NAMESPACE)
    assert kube.ca_file == f"{tmp_path}/ca.crt"
