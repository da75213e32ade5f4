"""Does the session's view of the account agree with the broker's? (pure)

The session folds fills into its positions and cash; the broker's fresh answers are the
truth. At start (against the journal's positions and the cash saved with the trading
state), after a reconnect and periodically, the two are compared after every fill the
broker reports and the journal did not have has been applied: what is left is a
difference nobody explains (a manual trade in the account, a second trader, a missed
fill), and trading halts with it as the reason rather than sizing orders on a wrong
account.
"""

from __future__ import annotations

# Shares are whole: anything beyond float noise is a real difference.
POSITION_TOLERANCE = 1e-6


def account_differences(
    view_positions: dict[str, float],
    broker_positions: dict[str, float],
    view_cash: float,
    broker_cash: float,
    *,
    cash_tolerance: float,
) -> list[str]:
    """What differs, one line each (empty: they agree). Cash within `cash_tolerance` agrees
    (commissions reported after the fill, interest)."""
    differences = []
    for symbol in sorted(set(view_positions) | set(broker_positions)):
        ours, theirs = view_positions.get(symbol, 0.0), broker_positions.get(symbol, 0.0)
        if abs(ours - theirs) > POSITION_TOLERANCE:
            differences.append(f"{symbol}: the journal holds {ours:g}, the broker {theirs:g}")
    if abs(view_cash - broker_cash) > cash_tolerance:
        differences.append(
            f"cash: the session has {view_cash:,.2f}, the broker {broker_cash:,.2f} (tolerance {cash_tolerance:,.2f})"
        )
    return differences
