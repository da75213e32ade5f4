"""The trade journal: every order intent, submission, status change, fill and position, in SQL.

SQLite locally (`sqlite:///journal.db`), PostgreSQL in a cluster (`postgresql://...`).
An intent is written BEFORE it is sent, under a deterministic `order_ref` that travels
to the broker as IB's orderRef. After a crash or a socket cut the journal says which
intents may be at the broker; `reconcile_decision` (pure) says what to do about each
after looking them up there, so the same intent is never sent twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from kubetrader.live.broker import BrokerOrder, Fill, OrderRequest

# intent lifecycle: pending (journaled, maybe sent) -> working -> filled | cancelled | rejected;
# refused (risk) and expired (never reached the broker, too old to send) are final too.
UNRESOLVED_STATES = ("pending", "working")
FINAL_STATES = ("filled", "cancelled", "rejected", "refused", "expired")

metadata = sa.MetaData()

intents = sa.Table(
    "intents",
    metadata,
    sa.Column("order_ref", sa.String(64), primary_key=True),
    sa.Column("deployment", sa.String(128), nullable=False, index=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("quantity", sa.Float, nullable=False),
    sa.Column("order_type", sa.String(8), nullable=False),
    sa.Column("limit_price", sa.Float),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("reason", sa.Text),
    sa.Column("broker_id", sa.String(64)),
    sa.Column("filled", sa.Float, nullable=False, default=0.0),
    sa.Column("avg_fill_price", sa.Float, nullable=False, default=0.0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

events = sa.Table(
    "journal_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment", sa.String(128), nullable=False, index=True),
    sa.Column("order_ref", sa.String(64), index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

fills = sa.Table(
    "fills",
    metadata,
    sa.Column("exec_id", sa.String(64), primary_key=True),
    sa.Column("deployment", sa.String(128), nullable=False, index=True),
    sa.Column("order_ref", sa.String(64), index=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("quantity", sa.Float, nullable=False),
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("commission", sa.Float, nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
)

positions = sa.Table(
    "positions",
    metadata,
    sa.Column("deployment", sa.String(128), primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("quantity", sa.Float, nullable=False),
    sa.Column("avg_cost", sa.Float, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# One row per deployment: the risk engine's state (kubetrader.risk.RiskEngine.to_record) and the
# session's cash, so a restarted runner keeps its kill switch, day baseline and peak.
trading_states = sa.Table(
    "trading_state",
    metadata,
    sa.Column("deployment", sa.String(128), primary_key=True),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


def make_order_ref(deployment: str, symbol: str, bar_time: dt.datetime, side: str, sequence: int) -> str:
    """A deterministic idempotency key: the same decision on the same bar gives the same ref.

    IB's orderRef is free text; 32 hex chars of a hash keep it short and opaque.
    """
    key = f"{deployment}|{symbol}|{bar_time.isoformat()}|{side}|{sequence}"
    return "kt-" + hashlib.sha256(key.encode()).hexdigest()[:29]


@dataclass(frozen=True)
class Intent:
    order_ref: str
    deployment: str
    symbol: str
    side: str
    quantity: float
    order_type: str
    limit_price: float | None
    state: str
    reason: str | None
    broker_id: str | None
    filled: float
    avg_fill_price: float
    created_at: dt.datetime
    updated_at: dt.datetime

    def request(self) -> OrderRequest:
        return OrderRequest(
            order_ref=self.order_ref,
            symbol=self.symbol,
            side="BUY" if self.side == "BUY" else "SELL",
            quantity=self.quantity,
            order_type="LMT" if self.order_type == "LMT" else "MKT",
            limit_price=self.limit_price,
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class Journal:
    """One deployment's journal in a SQL database (tables are shared, rows carry the deployment)."""

    def __init__(self, url: str, deployment: str) -> None:
        self.deployment = deployment
        self.engine = sa.create_engine(url, future=True)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ writes

    def record_intent(self, request: OrderRequest) -> tuple[Intent, bool]:
        """Journal an intent before it is sent. Returns (intent, created); an existing ref is returned as is."""
        existing = self.intent(request.order_ref)
        if existing is not None:
            return existing, False
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(
                intents.insert().values(
                    order_ref=request.order_ref,
                    deployment=self.deployment,
                    symbol=request.symbol,
                    side=request.side,
                    quantity=request.quantity,
                    order_type=request.order_type,
                    limit_price=request.limit_price,
                    state="pending",
                    filled=0.0,
                    avg_fill_price=0.0,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._event(conn, request.order_ref, "intent", _request_detail(request))
        intent = self.intent(request.order_ref)
        assert intent is not None
        return intent, True

    def record_refusal(self, request: OrderRequest, reason: str) -> None:
        """A risk refusal: the intent is journaled as `refused` with its reason, and never sent."""
        self.record_intent(request)
        self.set_state(request.order_ref, "refused", reason=reason, kind="refused")

    def set_state(
        self, order_ref: str, state: str, *, reason: str | None = None, kind: str = "status", **detail: Any
    ) -> None:
        values: dict[str, Any] = {"state": state, "updated_at": _now()}
        if reason is not None:
            values["reason"] = reason
        with self.engine.begin() as conn:
            conn.execute(intents.update().where(intents.c.order_ref == order_ref).values(**values))
            self._event(conn, order_ref, kind, {"state": state, "reason": reason, **detail})

    def apply_order(self, order: BrokerOrder) -> str | None:
        """Fold a broker order update into its intent; returns the new state (None: not ours)."""
        intent = self.intent(order.order_ref)
        if intent is None:
            return None
        state = order_state(order)
        if intent.state in FINAL_STATES and state == "working":
            return intent.state  # a late 'Submitted' after 'Filled' must not reopen the intent
        with self.engine.begin() as conn:
            conn.execute(
                intents.update()
                .where(intents.c.order_ref == order.order_ref)
                .values(
                    state=state,
                    broker_id=order.broker_id,
                    filled=order.filled,
                    avg_fill_price=order.avg_fill_price,
                    updated_at=_now(),
                )
            )
            if state != intent.state or order.filled != intent.filled:
                self._event(
                    conn,
                    order.order_ref,
                    "status",
                    {
                        "state": state,
                        "broker_status": order.status,
                        "filled": order.filled,
                        "broker_id": order.broker_id,
                    },
                )
        return state

    def record_fill(self, fill: Fill) -> bool:
        """Store a fill once (by exec id); a repeat only updates the commission. Returns True if new."""
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(fills.c.exec_id).where(fills.c.exec_id == fill.exec_id)).first()
            if exists:
                if fill.commission:
                    conn.execute(
                        fills.update().where(fills.c.exec_id == fill.exec_id).values(commission=fill.commission)
                    )
                return False
            conn.execute(
                fills.insert().values(
                    exec_id=fill.exec_id,
                    deployment=self.deployment,
                    order_ref=fill.order_ref,
                    symbol=fill.symbol,
                    side=fill.side,
                    quantity=fill.quantity,
                    price=fill.price,
                    commission=fill.commission,
                    time=fill.time,
                )
            )
            self._event(
                conn,
                fill.order_ref,
                "fill",
                {"exec_id": fill.exec_id, "side": fill.side, "quantity": fill.quantity, "price": fill.price},
            )
        return True

    def set_position(self, symbol: str, quantity: float, avg_cost: float) -> None:
        with self.engine.begin() as conn:
            old = conn.execute(
                sa.select(positions.c.quantity).where(
                    positions.c.deployment == self.deployment, positions.c.symbol == symbol
                )
            ).first()
            if old is not None and old.quantity == quantity:
                return
            if old is None:
                conn.execute(
                    positions.insert().values(
                        deployment=self.deployment,
                        symbol=symbol,
                        quantity=quantity,
                        avg_cost=avg_cost,
                        updated_at=_now(),
                    )
                )
            else:
                conn.execute(
                    positions.update()
                    .where(positions.c.deployment == self.deployment, positions.c.symbol == symbol)
                    .values(quantity=quantity, avg_cost=avg_cost, updated_at=_now())
                )
            self._event(conn, None, "position", {"symbol": symbol, "quantity": quantity, "avg_cost": avg_cost})

    # ------------------------------------------------------------ trading state (kubetrader.risk)

    def save_trading_state(self, record: dict[str, Any]) -> None:
        """Replace this deployment's trading state (one row, one transaction)."""
        values = {"record": json.dumps(record, default=str), "updated_at": _now()}
        with self.engine.begin() as conn:
            updated = conn.execute(
                trading_states.update().where(trading_states.c.deployment == self.deployment).values(**values)
            )
            if not updated.rowcount:
                conn.execute(trading_states.insert().values(deployment=self.deployment, **values))

    def trading_state(self) -> dict[str, Any] | None:
        """The last saved trading state, or None for a deployment that never ran."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(trading_states.c.record).where(trading_states.c.deployment == self.deployment)
            ).first()
        return json.loads(row.record) if row else None

    def note(self, kind: str, **detail: Any) -> None:
        """A run-level event: connection lost/restored, halted, stop requested, reconciliation."""
        with self.engine.begin() as conn:
            self._event(conn, None, kind, detail)

    def _event(self, conn: sa.Connection, order_ref: str | None, kind: str, detail: dict[str, Any]) -> None:
        conn.execute(
            events.insert().values(
                deployment=self.deployment,
                order_ref=order_ref,
                kind=kind,
                detail=json.dumps(detail, default=str),
                at=_now(),
            )
        )

    # ------------------------------------------------------------ reads

    def intent(self, order_ref: str) -> Intent | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(intents).where(intents.c.order_ref == order_ref)).first()
        return _intent(row) if row else None

    def intents(self, states: tuple[str, ...] | None = None) -> list[Intent]:
        query = sa.select(intents).where(intents.c.deployment == self.deployment)
        if states:
            query = query.where(intents.c.state.in_(states))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(intents.c.created_at)).all()
        return [_intent(r) for r in rows]

    def unresolved(self) -> list[Intent]:
        return self.intents(UNRESOLVED_STATES)

    def fills(self) -> list[Fill]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(fills).where(fills.c.deployment == self.deployment).order_by(fills.c.time)
            ).all()
        return [
            Fill(
                r.exec_id,
                r.order_ref,
                r.symbol,
                "BUY" if r.side == "BUY" else "SELL",
                r.quantity,
                r.price,
                r.commission,
                _aware(r.time),
            )
            for r in rows
        ]

    def positions(self) -> dict[str, float]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(positions).where(positions.c.deployment == self.deployment)).all()
        return {r.symbol: r.quantity for r in rows if r.quantity}

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(events).where(events.c.deployment == self.deployment)
        if kind:
            query = query.where(events.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(events.c.id)).all()
        return [
            {"order_ref": r.order_ref, "kind": r.kind, "detail": json.loads(r.detail), "at": _aware(r.at)} for r in rows
        ]

    def recent_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` events of this deployment, oldest first (what `GET /journal` serves)."""
        query = sa.select(events).where(events.c.deployment == self.deployment).order_by(events.c.id.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(max(0, limit))).all()
        return [
            {
                "id": r.id,
                "at": _aware(r.at).isoformat(),
                "kind": r.kind,
                "order_ref": r.order_ref,
                "detail": json.loads(r.detail),
            }
            for r in reversed(rows)
        ]


def _intent(row: Any) -> Intent:
    return Intent(
        order_ref=row.order_ref,
        deployment=row.deployment,
        symbol=row.symbol,
        side=row.side,
        quantity=row.quantity,
        order_type=row.order_type,
        limit_price=row.limit_price,
        state=row.state,
        reason=row.reason,
        broker_id=row.broker_id,
        filled=row.filled,
        avg_fill_price=row.avg_fill_price,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


def _request_detail(request: OrderRequest) -> dict[str, Any]:
    return {
        "symbol": request.symbol,
        "side": request.side,
        "quantity": request.quantity,
        "order_type": request.order_type,
        "limit_price": request.limit_price,
    }


def order_state(order: BrokerOrder) -> str:
    """Journal state of a broker order status."""
    if order.status == "Filled":
        return "filled"
    if order.status in ("Cancelled", "ApiCancelled"):
        return "cancelled"
    if order.status == "Inactive":
        return "rejected"
    return "working"


Decision = Literal["adopt", "send", "expire"]


def reconcile_decision(
    intent: Intent, at_broker: BrokerOrder | None, filled_at_broker: float, *, age: float, max_resend_age: float
) -> Decision:
    """What to do with an unresolved intent once the broker has been asked (fresh queries) about its ref.

    - the broker has the order (open or done) or executions carry the ref: `adopt` its state;
      never send again;
    - the broker has never seen the ref and the intent is young: `send` (with the same ref);
    - not seen and old (e.g. found on restart): `expire`; the strategy decides afresh on
      new data rather than acting on a stale signal.
    """
    if at_broker is not None or filled_at_broker > 0:
        return "adopt"
    return "send" if age <= max_resend_age else "expire"
