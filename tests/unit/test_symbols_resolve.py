"""`kubetrader symbols resolve`: IB's contract details through IBBroker, against the TWS peer (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kubetrader.errors import SpecError
from kubetrader.live.testing.instruments import con_id
from kubetrader.symbols.resolve import ResolvedContract, load_contract, resolve
from tests.helpers import cli_in_process, free_port

_run = cli_in_process


def test_resolve_stores_the_exact_contract_beside_the_data(
    tws_peer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(tmp_path / "data"))
    code, out, err = _run(capsys, "symbols", "resolve", "ORCL", "--port", str(tws_peer.port), "--json")
    assert code == 0, err
    shown = json.loads(out)
    stored = load_contract(tmp_path / "data", "ORCL")
    assert stored is not None and stored.model_dump() == shown
    assert (stored.symbol, stored.con_id, stored.sec_type) == ("ORCL", con_id("ORCL"), "STK")
    assert (stored.primary_exchange, stored.currency, stored.min_tick) == ("NASDAQ", "USD", 0.01)
    assert stored.time_zone == "US/Eastern"


def test_a_symbol_ib_does_not_know_exits_2_and_stores_nothing(
    tws_peer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(tmp_path / "data"))
    code, _, err = _run(capsys, "symbols", "resolve", "ZZZQ", "--port", str(tws_peer.port))
    assert code == 2
    assert "error: ZZZQ: IB has no contract for it (no security definition)" in err
    assert not (tmp_path / "data" / "contracts").exists()


def test_an_unreachable_gateway_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(tmp_path / "data"))
    code, _, _ = _run(capsys, "symbols", "resolve", "ORCL", "--port", str(free_port()))
    assert code == 3


def _details(con: int, currency: str, primary: str) -> Any:
    contract = SimpleNamespace(
        symbol="SHOP", conId=con, secType="STK", exchange="SMART", primaryExchange=primary,
        currency=currency, localSymbol="SHOP", tradingClass="SHOP",
    )  # fmt: skip
    return SimpleNamespace(
        contract=contract,
        longName="SHOPIFY INC",
        minTick=0.01,
        timeZoneId="US/Eastern",
        tradingHours="",
        liquidHours="",
    )


class _TwoListings:
    """IB lists SHOP in New York (USD) and Toronto (CAD) when no currency is given."""

    def contract_details(self, symbol: str, **_: Any) -> list[Any]:
        return [_details(195014116, "USD", "NYSE"), _details(195014119, "CAD", "TSE")]


def test_an_ambiguous_symbol_lists_the_candidates() -> None:
    with pytest.raises(SpecError) as info:
        resolve(_TwoListings(), "SHOP")
    assert str(info.value) == (
        "symbol: SHOP is ambiguous at IB (2 contracts): SHOP STK USD on NYSE (conId 195014116);"
        " SHOP STK CAD on TSE (conId 195014119); give --currency or --exchange"
    )


def test_the_same_contract_listed_twice_is_not_ambiguous() -> None:
    class Twice:
        def contract_details(self, symbol: str, **_: Any) -> list[Any]:
            return [_details(1, "USD", "NYSE"), _details(1, "USD", "NYSE")]

    assert isinstance(resolve(Twice(), "SHOP"), ResolvedContract)


def test_data_download_resolves_stores_the_contract_and_the_validated_bars(
    tws_peer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubetrader.data import DataStore

    store = tmp_path / "data"
    argv = ["data", "--data-dir", str(store), "download", "ORCL", "--start", "2012-01-01", "--end", "2012-03-31"]
    code, out, err = _run(capsys, *argv, "--port", str(tws_peer.port))
    assert code == 0, err
    assert f"ORCL STK USD on NASDAQ (conId {con_id('ORCL')})" in out
    bars = DataStore(store).read("ORCL", "1d")
    assert f"ORCL: {len(bars)} bars in 1 requests, {len(bars)} new" in out
    assert DataStore(store).validate("ORCL", "1d").valid
    assert load_contract(store, "ORCL") is not None


def test_data_download_of_an_ambiguous_symbol_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tws_peer: Any
) -> None:
    from kubetrader.live.ib_broker import IBBroker

    monkeypatch.setattr(IBBroker, "contract_details", lambda self, symbol, **_: _TwoListings().contract_details(symbol))
    store = tmp_path / "data"
    argv = ["data", "--data-dir", str(store), "download", "SHOP", "--start", "2012-01-01", "--end", "2012-03-31"]
    code, _, err = _run(capsys, *argv, "--port", str(tws_peer.port))
    assert code == 2
    assert "SHOP is ambiguous at IB (2 contracts)" in err
    assert not store.exists() or (not any(store.rglob("*.json")) and not any(store.rglob("*.parquet")))
