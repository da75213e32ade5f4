"""The live runner's bearer token is derived from the operator's key, so the operator never reads a
runner's token Secret back (the chart grants it no `get` on Secrets beyond operator.readableSecrets)."""

from __future__ import annotations

import pytest

from kubetrader_operator.live import builders, kube_io
from kubetrader_operator.live.settings import LiveSettings


def test_the_token_is_stable_per_deployment_and_unguessable_without_the_key() -> None:
    token = builders.runner_token("k1", "trading", "sma-paper")
    assert token == builders.runner_token("k1", "trading", "sma-paper")  # a restarted operator derives it again
    assert len(token) == 64 and int(token, 16) >= 0
    others = {
        builders.runner_token("k2", "trading", "sma-paper"),  # another key
        builders.runner_token("k1", "research", "sma-paper"),  # the same name elsewhere
        builders.runner_token("k1", "trading", "sma-paper-2"),
        builders.runner_token("k1", "trading/sma", "paper"),  # no ambiguity across the separator
    }
    assert token not in others and len(others) == 4
    assert builders.build_token_secret("sma-paper", "trading", token)["stringData"] == {"token": token}


def test_the_key_comes_from_the_environment_as_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETRADER_OPERATOR_LIVE_RUNNER_TOKEN_KEY", "from-the-chart")
    settings = LiveSettings()
    assert settings.runner_token_key is not None
    assert settings.runner_token_key.get_secret_value() == "from-the-chart"
    assert "from-the-chart" not in repr(settings)
    monkeypatch.delenv("KUBETRADER_OPERATOR_LIVE_RUNNER_TOKEN_KEY")
    assert LiveSettings().runner_token_key is None


def test_the_operator_has_no_way_left_to_read_a_runners_token_secret() -> None:
    assert not hasattr(kube_io, "read_token")
