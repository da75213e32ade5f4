"""Names as label values, child names, and which existing child an owner may adopt. Pure."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kubetrader.specs.live import LiveDeploymentSpec
from kubetrader_operator.labels import SPEC_HASH_ANNOTATION, child_name, label_value, stale_child
from kubetrader_operator.live.builders import LIVE_LABEL, build_children
from kubetrader_operator.live.settings import LiveSettings
from tests.helpers import EXAMPLES
from tests.kube.metadata import is_label_value

PAPER = LiveDeploymentSpec.model_validate(yaml.safe_load((EXAMPLES / "live-paper.yaml").read_text())["spec"])


@pytest.mark.parametrize("name", ["sma-orcl", "a" * 63])
def test_a_name_that_fits_a_label_value_is_the_label_value(name: str) -> None:
    assert label_value(name) == name


def test_a_longer_name_becomes_a_valid_label_value_unique_to_it() -> None:
    first, second = "sma-orcl-" + "x" * 80 + "-one", "sma-orcl-" + "x" * 80 + "-two"
    values = {label_value(first), label_value(second)}
    assert len(values) == 2
    for value in values:
        assert len(value) <= 63 and is_label_value(value) == [], value
    assert label_value(first) == label_value(first)  # deterministic: selectors find what labels were put on


def test_child_names_leave_room_for_the_pod_suffix() -> None:
    assert child_name("bt", "sma-orcl") == "bt-sma-orcl"
    long = child_name("bt", "x" * 63)
    assert len(long) <= 52 and long.startswith("bt-x")


def _child(uid: str, spec_hash: str) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {
            "name": "bt-sma-orcl",
            "ownerReferences": [{"kind": "Backtest", "name": "sma-orcl", "uid": uid, "controller": True}],
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash},
        },
    }


def test_only_a_child_of_the_same_owner_and_spec_is_adopted() -> None:
    assert stale_child(_child("uid-1", "h1"), _child("uid-1", "h1")) is None
    earlier = stale_child(_child("uid-0", "h0"), _child("uid-1", "h1"))
    assert earlier is not None and "uid uid-0" in earlier and "garbage collector" in earlier
    edited = stale_child(_child("uid-1", "h0"), _child("uid-1", "h1"))
    assert edited is not None and "another spec" in edited


def test_every_live_selector_matches_the_labels_of_what_it_selects_even_for_a_long_name() -> None:
    deployment = "paper-" + "x" * 70
    network = LiveSettings().network()
    made = build_children(
        PAPER, deployment, "trading", image="i", gateway_image="g", runner_port=8000, token="t", network=network
    )
    built = {c["kind"]: c for c in made}
    for kind in ("StatefulSet", "Deployment"):
        selector = built[kind]["spec"]["selector"]["matchLabels"]
        template = built[kind]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= template.items(), kind
        assert selector[LIVE_LABEL] == label_value(deployment)
    for labels in (built[k]["metadata"]["labels"] for k in built):
        assert all(is_label_value(v) == [] for v in labels.values()), labels
