"""The randomized fault campaign (kubetrader.live.testing.campaign): a few dozen seeds, invariants after each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubetrader.live.testing.campaign import run, scenario, violations
from kubetrader.live.testing.tws_peer import TwsPeer
from tests.helpers import free_port

SEEDS = range(24)


@pytest.fixture(scope="module")
def campaign_peer() -> Iterator[TwsPeer]:
    peer = TwsPeer(port=free_port(), bar_interval=0.01, replay_start={"ORCL": 4300, "NVDA": 3000, "YHOO": 4000})
    peer.start()
    yield peer
    peer.stop()


def test_scenarios_are_drawn_from_the_seed_alone() -> None:
    assert scenario(7) == scenario(7)
    assert len({repr(scenario(s)) for s in SEEDS}) == len(SEEDS)


@pytest.mark.parametrize("seed", SEEDS)
def test_stop_under_random_faults_keeps_the_invariants(campaign_peer: TwsPeer, seed: int) -> None:
    outcome = run(campaign_peer, scenario(seed))
    assert violations(outcome) == [], (outcome.report, outcome.scenario)
