"""The issue's invalid Backtests, refused by `kubectl apply` itself with the field named.

tests/kube/test_admission.py asserts the API's Status bodies over HTTP; here the user's command
line meets them: real kubectl 1.37 prints the server's message (`The Backtest "x" is invalid:
spec.broker.cash: ...`) and exits 1, and nothing is stored. Also what a user does next: editing a
Backtest's spec (refused by the CRD's own CEL rule) and `kubectl delete --cascade=orphan`
(the children stay, as the real garbage collector keeps them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import EXAMPLES, ROOT, wait_until
from tests.kube.cluster import EmulatedCluster
from tests.kube.kubectl import Kubectl

NS = "default"


@pytest.fixture
def kubectl(kube_cluster: EmulatedCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kubectl:
    monkeypatch.chdir(ROOT)
    return Kubectl(kube_cluster.kubeconfig, tmp_path / "home")


def example(name: str, change: Callable[[dict[str, Any]], Any] = lambda s: None) -> str:
    doc = yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())
    doc["metadata"]["name"] = name
    change(doc["spec"])
    return yaml.safe_dump(doc)


# (case, change to the example's spec, what kubectl must print). kubectl sends
# fieldValidation=Strict (its default, `--validate=strict`), so an unknown field is the server's
# 400 "strict decoding error"; schema and CEL errors are the 422 Invalid with each field named.
REFUSED: list[tuple[str, Callable[[dict[str, Any]], Any], list[str]]] = [
    (
        "typo comission",
        lambda s: s["broker"].update(comission={"model": "none"}),
        ['strict decoding error: unknown field "spec.broker.comission"'],
    ),
    (
        "negative cash",
        lambda s: s["broker"].update(cash=-5),
        ['The Backtest "bad" is invalid', "spec.broker.cash: Invalid value: -5", "should be greater than 0"],
    ),
    (
        "end before start",
        lambda s: s["data"].update(end="2004-01-01"),
        ['The Backtest "bad" is invalid', "spec.data.end: Invalid value", "data.end must be after data.start"],
    ),
    (
        "cash not a number",
        lambda s: s["broker"].update(cash="lots"),
        ['The Backtest "bad" is invalid', "spec.broker.cash", "must be of type number"],
    ),
    (
        "lowercase symbol",
        lambda s: s["data"].update(symbols=["orcl"]),
        ['The Backtest "bad" is invalid', 'spec.data.symbols[0]: Invalid value: "orcl"'],
    ),
]


@pytest.mark.parametrize(("case", "change", "printed"), REFUSED, ids=[c[0] for c in REFUSED])
def test_kubectl_apply_refuses_an_invalid_backtest_naming_the_field(
    kube_cluster: EmulatedCluster,
    kubectl: Kubectl,
    case: str,
    change: Callable[[dict[str, Any]], Any],
    printed: list[str],
) -> None:
    stderr = kubectl.fails("apply", "-f", "-", stdin=example("bad", change))
    for text in printed:
        assert text in stderr, f"{case}: {text!r} not in kubectl's output:\n{stderr}"
    assert kube_cluster.get("Backtest", NS, "bad") is None  # nothing stored


def test_editing_a_backtests_spec_is_refused_and_the_stored_one_kept(
    kube_cluster: EmulatedCluster, kubectl: Kubectl
) -> None:
    kubectl("apply", "-f", "-", stdin=example("frozen"))
    edited = example("frozen", lambda s: s["strategy"]["params"].update(fast=20))
    stderr = kubectl.fails("apply", "-f", "-", stdin=edited)
    assert 'The Backtest "frozen" is invalid' in stderr and "spec is immutable" in stderr
    stored = kube_cluster.get("Backtest", NS, "frozen")
    assert stored is not None
    assert stored["spec"]["strategy"]["params"]["fast"] == 10 and stored["metadata"]["generation"] == 1


def _owned_config_map(owner: dict[str, Any], name: str) -> dict[str, Any]:
    meta = owner["metadata"]
    ref = {"apiVersion": owner["apiVersion"], "kind": "Backtest", "name": meta["name"], "uid": meta["uid"]}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS, "ownerReferences": [ref]},
        "data": {"spec.json": "{}"},
    }


@pytest.mark.parametrize(("cascade", "kept"), [("orphan", True), ("background", False)])
def test_kubectl_delete_cascade_decides_whether_the_children_stay(
    kube_cluster: EmulatedCluster, kubectl: Kubectl, cascade: str, kept: bool
) -> None:
    kubectl("apply", "-f", "-", stdin=example("parent"))
    owner = kube_cluster.get("Backtest", NS, "parent")
    assert owner is not None
    kube_cluster.create(_owned_config_map(owner, "child"))

    kubectl("delete", "backtest", "parent", f"--cascade={cascade}", "--wait=true")
    assert kube_cluster.get("Backtest", NS, "parent") is None
    if kept:
        kube_cluster.collect_garbage()  # one more pass: a collector that deletes it would do so now
        child = kube_cluster.get("ConfigMap", NS, "child")
        assert child is not None and not child["metadata"].get("ownerReferences")  # orphaned, as the GC does
    else:
        wait_until(lambda: kube_cluster.get("ConfigMap", NS, "child") is None, timeout=10, what="child collected")


def test_kubectl_apply_refuses_a_median_pruner_the_operator_could_not_run(
    kube_cluster: EmulatedCluster, kubectl: Kubectl
) -> None:
    """Issue 22: the CRD listed `pruner: median`, so kubectl stored a study the operator then failed.
    The CRD's enum now holds only what the model accepts; kube-apiserver names the field and the
    supported values (its enum message: `Unsupported value: "median": supported values: "none"`)."""
    doc = yaml.safe_load((EXAMPLES / "study-sma.yaml").read_text())
    doc["metadata"]["name"] = "pruned"
    doc["spec"]["pruner"] = "median"
    stderr = kubectl.fails("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    assert 'The OptimizationStudy "pruned" is invalid' in stderr, stderr
    assert 'spec.pruner: Unsupported value: "median"' in stderr and '"none"' in stderr, stderr
    assert kube_cluster.get("OptimizationStudy", NS, "pruned") is None
