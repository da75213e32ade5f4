"""`resolve`: a symbol to the one IB contract a backtest's data and a live deployment will both use.

IB's contract details (`reqContractDetails`, through `IBBroker.contract_details`) name
the exact instrument: conId, primary exchange, currency, trading hours, minimum tick.
The resolved contract is stored beside the symbol's data (`contracts/{SYMBOL}.json` in
the data store), so the contract a backtest's bars came from is on record for the live
runner. A description that matches several contracts is ambiguous: the candidates are
listed and nothing is stored (say `--currency` or `--exchange` to pick one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from kubetrader.errors import DataError, SpecError

CONTRACTS_DIR = "contracts"


class ResolvedContract(BaseModel):
    """The fields of IB's ContractDetails a deployment needs to trade exactly this instrument."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    con_id: int
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str
    long_name: str
    min_tick: float
    time_zone: str
    trading_hours: str
    liquid_hours: str

    @classmethod
    def from_details(cls, details: Any) -> ResolvedContract:
        """From an ib_insync ContractDetails."""
        c = details.contract
        return cls(
            symbol=str(c.symbol),
            con_id=int(c.conId),
            sec_type=str(c.secType),
            exchange=str(c.exchange),
            primary_exchange=str(c.primaryExchange),
            currency=str(c.currency),
            local_symbol=str(c.localSymbol),
            trading_class=str(c.tradingClass),
            long_name=str(details.longName or ""),
            min_tick=float(details.minTick or 0.0),
            time_zone=str(details.timeZoneId or ""),
            trading_hours=str(details.tradingHours or ""),
            liquid_hours=str(details.liquidHours or ""),
        )

    def label(self) -> str:
        where = self.primary_exchange or self.exchange
        return f"{self.symbol} {self.sec_type} {self.currency} on {where} (conId {self.con_id})"


def one_contract(symbol: str, candidates: list[ResolvedContract]) -> ResolvedContract:
    """The single candidate; DataError when IB knows none, SpecError listing them when there are several."""
    if not candidates:
        raise DataError(f"{symbol}: IB has no contract for it (no security definition)")
    unique = {c.con_id: c for c in candidates}
    if len(unique) > 1:
        listed = "; ".join(c.label() for c in unique.values())
        raise SpecError(
            "symbol",
            f"{symbol} is ambiguous at IB ({len(unique)} contracts): {listed}; give --currency or --exchange",
        )
    return next(iter(unique.values()))


def contract_path(store_root: Path, symbol: str) -> Path:
    from kubetrader.data.store import check_symbol

    return store_root / CONTRACTS_DIR / f"{check_symbol(symbol)}.json"


def save_contract(store_root: Path, symbol: str, contract: ResolvedContract) -> Path:
    """Write the contract beside the data (atomically), under the store's symbol."""
    from kubetrader.results.store import atomic_write_text

    return atomic_write_text(contract_path(store_root, symbol), contract.model_dump_json(indent=1))


def load_contract(store_root: Path, symbol: str) -> ResolvedContract | None:
    path = contract_path(store_root, symbol)
    if not path.is_file():
        return None
    return ResolvedContract.model_validate(json.loads(path.read_text(encoding="utf-8")))


def resolve(
    broker: Any, symbol: str, *, sec_type: str = "STK", exchange: str = "SMART", currency: str = ""
) -> ResolvedContract:
    """Ask IB for `symbol`'s contract details and return the one contract (see `one_contract`)."""
    details = broker.contract_details(symbol, sec_type=sec_type, exchange=exchange, currency=currency)
    return one_contract(symbol, [ResolvedContract.from_details(d) for d in details])
