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

from kubetrader.live.broker import ClientIdInUseError

__all__ = ["ClientIdInUseError", "acting_client_id"]


def acting_client_id(runner_client_id: int, own_client_id: int, *, flatten: bool) -> int:
    """The client id a stop must act under: the runner's when it sends orders (fenced), else its own."""
    return runner_client_id if flatten else own_client_id
