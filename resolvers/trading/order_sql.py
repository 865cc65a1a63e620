"""The statements that store a placed order (resolvers/trading/orders.py runs them on raw asyncpg, under the market
lock): each writes the order with what belongs to it in one round trip. Parameters $1..$15 are the order's columns
(ORDER_CTE) in every one that inserts it."""

from __future__ import annotations

from dataclasses import fields

from resolvers import ledger
from resolvers.trading.order_view import VIEW_SQL, OrderView
from resolvers.trading.settlement import TRADES_CTE

# the incoming order is inserted once matching has decided its state (under the lock, so its seq still gives it
# time priority), in the same statement as the rows that reference it (trades) or that describe it (audit)
ORDER_CTE = f"""
WITH o AS (INSERT INTO orders (id, market_id, user_id, client_order_id, side, type, time_in_force, price, quantity,
                               filled_quantity, status, reason, expires_at, wallet_address, reserved_cash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING {VIEW_SQL})"""


def _audit(actor: str, target: str, request: str, details: str) -> str:
    """CTE a: the order's 'order.place' audit row (the parameters are placeholders such as "$3")."""
    return f"""
     a AS (INSERT INTO audit_log (actor_id, action, target_type, target_id, request_id, details)
           VALUES ({actor}, 'order.place', 'order', {target}, {request}, {details}))"""


def _final(market: str, user: str, day: str, value: str, bump: str, sides: str, prices: str) -> str:
    """CTEs d, s, l of a placement's last statement: the investor's daily order value (when `value` is not null),
    the market's next book sequence (when `bump`), and the totals of the changed levels (`sides`, `prices`) as
    arrays. Every part of one statement sees the snapshot from before it."""
    return f"""
     d AS (INSERT INTO investor_daily_notional (market_id, user_id, day, notional)
           SELECT {market}, {user}, {day}::date, {value}::numeric WHERE {value}::numeric IS NOT NULL
           ON CONFLICT (market_id, user_id, day)
           DO UPDATE SET notional = investor_daily_notional.notional + EXCLUDED.notional),
     s AS (UPDATE markets SET book_sequence = book_sequence + 1 WHERE id = {market} AND {bump} RETURNING book_sequence),
     l AS (SELECT array_agg(g.side::text) AS sides, array_agg(g.price) AS prices, array_agg(g.qty) AS qtys FROM (
               SELECT r.side, r.price, sum(r.quantity - r.filled_quantity) AS qty FROM orders r
               WHERE r.market_id = {market} AND r.status IN ('NEW', 'PARTIALLY_FILLED')
                 AND (r.side, r.price) IN (SELECT * FROM unnest({sides}::order_side[], {prices}::numeric[]))
               GROUP BY r.side, r.price) g)"""


# a rejection: the order and its audit row
INSERT_REJECTED = (
    ORDER_CTE
    + ","
    + _audit("$3", "$1::text", "$16", "$17")
    + """
SELECT * FROM o"""
)
# an order that changed no maker (it rests, or found nothing to take): the order, its audit row, the investor's
# daily order value (when the market limits it: $19 day, $20 value added) and (when it rests, $18) the market's next
# book sequence with the totals of the changed levels ($21, $22). Every part of one statement sees the snapshot from
# before it, so the totals do not include the order itself: orders._execute adds what rests.
INSERT_AND_FINAL = (
    ORDER_CTE
    + ","
    + _audit("$3", "$1::text", "$16", "$17")
    + ","
    + _final(market="$2", user="$3", day="$19", value="$20", bump="$18", sides="$21", prices="$22")
    + """{cash}
SELECT o.*, (SELECT book_sequence FROM s) AS book_sequence, l.sides, l.prices, l.qtys FROM o, l"""
)
# a resting buy: with its reservation (the ledger's CTEs, $23..)
INSERT_AND_FINAL_CASH = INSERT_AND_FINAL.replace("{cash}", "," + ledger.movements_cte(23))
INSERT_AND_FINAL = INSERT_AND_FINAL.replace("{cash}", "")
# an order that changed makers: the order and its trades (with their token legs, settlement.TRADES_CTE; $16 the
# trades' time) and the cash they move (the ledger's CTEs, $32..: the trades' settlement, the reservation of what
# rests of a buy, the release of what finished maker buys still hold), their (seq, market sequence) in fill order
TAKER_AND_TRADES = (
    ORDER_CTE
    + ","
    + TRADES_CTE
    + "{cash}"
    + """
SELECT o.*, x.ids AS trade_ids, x.seqs AS trade_seqs, x.market_seqs AS trade_market_seqs FROM o, (
    SELECT array_agg(t.id ORDER BY t.seq) AS ids, array_agg(t.seq ORDER BY t.seq) AS seqs,
           array_agg(t.market_sequence ORDER BY t.seq) AS market_seqs FROM t) x"""
)
TAKER_AND_TRADES_CASH = TAKER_AND_TRADES.replace("{cash}", "," + ledger.movements_cte(32))
TAKER_AND_TRADES = TAKER_AND_TRADES.replace("{cash}", "")
# then, once the cash has moved (ledger), the makers' update, the order's audit row, the investor's daily order value
# (when the market limits it: $9 day, $10 value added), the market's next book sequence and the changed levels'
# totals, in one round trip. Every part of one statement sees the same snapshot, so the level totals here are from
# before the makers' update (and after the taker's insert, an earlier statement); orders._execute subtracts what the update
# takes off each level (fills, expired remainders).
MAKERS_AND_FINAL = (
    f"""
WITH u AS (UPDATE orders o SET filled_quantity = coalesce(x.filled, o.filled_quantity), status = x.status,
                               reason = x.reason, reserved_cash = x.reserved, updated_at = $16
           FROM unnest($11::uuid[], $12::numeric[], $13::order_status[], $14::varchar[], $15::numeric[])
                AS x(id, filled, status, reason, reserved)
           WHERE o.id = x.id RETURNING {", ".join("o." + f.name for f in fields(OrderView))}),"""
    + _audit("$4", "$5", "$6", "$7")
    + ","
    + _final(market="$1", user="$4", day="$9", value="$10", bump="$8", sides="$2", prices="$3")
    + """
SELECT u.*, (SELECT book_sequence FROM s) AS book_sequence, l.sides, l.prices, l.qtys FROM u, l"""
)
# the same for the usual single maker: `o.id = $11[1]` makes the maker a primary-key lookup in the cached plan
# whatever the planner knows of the table (without statistics it hash-joined a scan of every order: O(table))
MAKERS_AND_FINAL_ONE = MAKERS_AND_FINAL.replace("WHERE o.id = x.id", "WHERE o.id = ($11::uuid[])[1] AND o.id = x.id")
assert MAKERS_AND_FINAL_ONE != MAKERS_AND_FINAL
