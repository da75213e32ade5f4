"""Who may act on an account: the flattener slot, fenced by the gateway itself.

Two processes flattening one account at once run away: each sees the other's closes
as a position still open and closes it again (issue #14 saw ±10^12 shares). A lease
row in a database the runner and the operator both reach would need a shared
database they do not have (the runner's journal is its own), and a lease is only as
good as its fencing: a holder that lost it must not be able to send.

IB gives the fencing for free: a gateway accepts ONE connection per API client id and
refuses a second with error 326 ("client id is already in use"), and an order can only
be sent over a connection. So the slot is the deployment's client id
(`spec.gateway.clientId`) at the deployment's gateway:

- the runner holds it while it is connected; its flattener (`kubetrader.live.stop`)
  acts under it;
- the operator acts only when the runner does not answer, and then connects under the
  SAME client id (`kubetrader_operator.live.stopping`): refused while the runner is
  still connected (alive but unreachable over HTTP), so never two flatteners; while
  the operator holds it, a restarted runner cannot connect and trade
  (`ClientIdInUseError` on its side, retried with backoff);
- a process that loses its socket loses the slot at once: nothing can be sent over a
  dead connection, which is the fencing token a lease table would have to emulate.

Building on it ("one trader per account", issue #15): a second trader for the same
account through the same gateway must use the same client id to be fenced; traders
through different gateways (or different client ids) are not, and need a lease in
shared state on top (a table keyed by account with a monotonic fencing token written
with each order), for which `acting_client_id` is the place to hook in.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import sqlalchemy as sa

from kubetrader.live.broker import ClientIdInUseError

__all__ = ["AccountLease", "ClientIdInUseError", "LeaseHolder", "acting_client_id"]


def acting_client_id(runner_client_id: int, own_client_id: int, *, flatten: bool) -> int:
    """The client id a stop must act under: the runner's when it sends orders (fenced), else its own."""
    return runner_client_id if flatten else own_client_id


# ---------------------------------------------------------------- the account lease (issue #15)
#
# Client-id fencing covers two traders through one gateway under one client id. Two runners
# on one account under DIFFERENT client ids (a second deployment, a manual session, a rolling
# update's overlap through another gateway) need the lease below: a row per account in the
# journal database, which the runners of an account share. Decision: the journal database
# rather than a Kubernetes Lease object, because the same code then fences `kubetrader live
# run` on a laptop and in the cluster, and the runner needs no Kubernetes API access.
#
# - `acquire` takes the row when it is free, expired, or already ours; every take raises the
#   fencing token. A runner that cannot take it waits and says who holds it until when.
# - `valid()` is what the session's gate asks before EVERY send: held, and the local deadline
#   (last renewal + 2/3 of the term) not passed. The deadline is local and shorter than the
#   term another runner must wait out, so a runner that stalls (GC pause, lost database)
#   stops sending before anyone else can take the lease; `renew` re-reads the row and
#   finds out if the token moved on.

lease_metadata = sa.MetaData()
account_leases = sa.Table(
    "account_leases",
    lease_metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(160), nullable=False),
    sa.Column("token", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # epoch seconds
)


@dataclass(frozen=True)
class LeaseHolder:
    holder: str
    token: int
    expires_at: float

    def describe(self) -> str:
        until = dt.datetime.fromtimestamp(self.expires_at, dt.UTC).isoformat(timespec="seconds")
        return f"held by {self.holder} (token {self.token}) until {until}"


class AccountLease:
    """One trader per account: the lease row of `account`, as `holder` sees it."""

    def __init__(self, engine: sa.Engine, account: str, holder: str, *, term: float = 15.0) -> None:
        self.engine = engine
        self.account = account
        self.holder = holder
        self.term = term
        self.token: int | None = None
        self._valid_until = 0.0
        lease_metadata.create_all(engine)

    def current(self) -> LeaseHolder | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(account_leases).where(account_leases.c.account == self.account)).first()
        return LeaseHolder(row.holder, row.token, row.expires_at) if row else None

    def acquire(self) -> LeaseHolder | None:
        """Take or renew the lease; returns None when held, else who holds it (wait and try again)."""
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(account_leases).where(account_leases.c.account == self.account).with_for_update()
            ).first()
            if row is None:
                token = 1
                conn.execute(
                    account_leases.insert().values(
                        account=self.account, holder=self.holder, token=token, expires_at=now + self.term
                    )
                )
            elif row.holder == self.holder and row.token == self.token:
                token = row.token  # a renewal of what we hold
                conn.execute(
                    account_leases.update()
                    .where(account_leases.c.account == self.account, account_leases.c.token == token)
                    .values(expires_at=now + self.term)
                )
            elif row.expires_at <= now:
                token = row.token + 1  # taken over: the old holder's token no longer matches
                updated = conn.execute(
                    account_leases.update()
                    .where(account_leases.c.account == self.account, account_leases.c.token == row.token)
                    .values(holder=self.holder, token=token, expires_at=now + self.term)
                )
                if not updated.rowcount:
                    return self.current()
            else:
                self.token = None
                self._valid_until = 0.0
                return LeaseHolder(row.holder, row.token, row.expires_at)
        self.token = token
        self._valid_until = now + self.term * 2 / 3
        return None

    def valid(self) -> bool:
        """May this holder send now? (no database round trip: see the section's comment)"""
        return self.token is not None and time.time() < self._valid_until

    def release(self) -> None:
        if self.token is None:
            return
        with self.engine.begin() as conn:
            conn.execute(
                account_leases.delete().where(
                    account_leases.c.account == self.account, account_leases.c.token == self.token
                )
            )
        self.token = None
        self._valid_until = 0.0
