"""What the TWS peer trades: contracts by conId (stocks, options, futures, FX) and their prices.

IB identifies a contract by its conId; a symbol alone is ambiguous (ORCL the stock, an
ORCL option, an ORCL single-stock future). Positions, executions and orders on the
wire all carry the whole contract block, so a client that closes "ORCL" with a stock
order while the account holds an ORCL option has closed nothing. The peer keys every
book by conId for that reason.

Prices: a stock's price is the close of its replayed bar; a derivative follows its
underlying (`price_of` / `price_scale`); FX pairs have a fixed rate unless replayed.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

Field = str | int | float | bool | None

# Where each security type routes: stocks and options through SMART; a future on its
# exchange; FX on IDEALPRO (IB's FX venue). https://interactivebrokers.github.io/tws-api/basic_contracts.html
DEFAULT_EXCHANGE = {"STK": "SMART", "OPT": "SMART", "FUT": "CME", "CASH": "IDEALPRO"}


def con_id(symbol: str, sec_type: str = "STK", local_symbol: str = "") -> int:
    """A stable contract id, so restarts of the peer agree with journals (stocks keep their old ids)."""
    key = symbol if sec_type == "STK" else f"{symbol}|{sec_type}|{local_symbol}"
    return 100_000 + zlib.crc32(key.encode()) % 900_000


@dataclass(frozen=True)
class Instrument:
    """One contract as TWS describes it (the fields of IB's Contract the peer needs)."""

    symbol: str
    sec_type: str = "STK"
    expiry: str = ""  # lastTradeDateOrContractMonth
    strike: float = 0.0
    right: str = ""  # C / P for options
    multiplier: str = ""
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""
    exchange: str = ""
    primary_exchange: str = "NASDAQ"
    price_of: str = ""  # the replayed symbol whose bars drive this price ("" = own bars)
    price_scale: float = 1.0
    fixed_price: float | None = None  # FX and anything without bars
    con_id_override: int = 0

    @property
    def con_id(self) -> int:
        return self.con_id_override or con_id(self.symbol, self.sec_type, self.local)

    @property
    def local(self) -> str:
        return self.local_symbol or self.symbol

    @property
    def route(self) -> str:
        return self.exchange or DEFAULT_EXCHANGE.get(self.sec_type, "SMART")

    @property
    def klass(self) -> str:
        return self.trading_class or ("NMS" if self.sec_type == "STK" else self.symbol)

    @property
    def bar_symbol(self) -> str:
        return self.price_of or self.symbol

    @property
    def contract_multiplier(self) -> float:
        return float(self.multiplier) if self.multiplier else 1.0

    def block11(self, *, primary: bool = False) -> Sequence[Field]:
        """conId, symbol, secType, expiry, strike, right, multiplier, exchange|primaryExchange,
        currency, localSymbol, tradingClass: the contract block most messages share."""
        exchange = self.primary_exchange if primary else self.route
        return (
            self.con_id, self.symbol, self.sec_type, self.expiry, self.strike, self.right, self.multiplier,
            exchange, self.currency, self.local, self.klass,
        )  # fmt: skip

    def matches(self, f: Sequence[str]) -> bool:
        """Does a client's 12-field contract block (conId first) name this instrument?"""
        cid, symbol, sec_type, expiry, strike, right = f[0], f[1], f[2], f[3], f[4], f[5]
        if cid and cid != "0":
            return int(cid) == self.con_id
        if symbol != self.symbol or (sec_type or "STK") != self.sec_type:
            return False
        if expiry and not self.expiry.startswith(expiry):
            return False
        if strike and float(strike) and float(strike) != self.strike:
            return False
        return not right or right[:1] == self.right[:1]


def stock(symbol: str) -> Instrument:
    return Instrument(symbol)


def option(underlying: str, expiry: str, strike: float, right: str, *, price_scale: float = 0.05) -> Instrument:
    """An equity option (100 multiplier) priced at a fraction of its underlying's bar."""
    local = f"{underlying:<6}{expiry[2:]}{right}{int(strike * 1000):08d}"
    return Instrument(
        underlying, "OPT", expiry, strike, right, "100", local_symbol=local, trading_class=underlying,
        price_of=underlying, price_scale=price_scale,
    )  # fmt: skip


def future(root: str, month: str, *, underlying: str, exchange: str = "CME", multiplier: str = "50") -> Instrument:
    return Instrument(
        root, "FUT", month, multiplier=multiplier, local_symbol=f"{root}{month[2:]}", exchange=exchange,
        price_of=underlying,
    )  # fmt: skip


def fx(base: str, quote: str, rate: float) -> Instrument:
    return Instrument(base, "CASH", currency=quote, local_symbol=f"{base}.{quote}", trading_class=f"{base}.{quote}",
                      fixed_price=rate)  # fmt: skip
