"""The two statements of a batch of placements (resolvers/trading/batch.py), run under the market lock: READ, what
every order of the batch needs (the market, the callers' gate rows, the clientOrderIds already used, the top of
both sides of the book), and WRITE, everything the batch decided (its orders, audit rows, trades with their token
legs and agent operations, the makers' new state, the cash movements) with the totals of the changed levels from
before it. WRITE numbers the batch's trades in the market (`market_sequence`) with one update of the market's row
(`ms`: the batch's trade count added, trade n of the batch gets the value from before + n; the trigger of migration
0020 fires only for trades inserted without one, migration 0025: it cost one plpgsql call and one row update per
trade). The book sequence is bumped by a third, small statement (BUMP): two updates of one row from one statement
fail in Postgres."""

from __future__ import annotations

from resolvers import ledger
from resolvers.trading.book import BARRED_SQL
from resolvers.trading.gate import WALLETS
from resolvers.trading.order_view import VIEW_SQL
from resolvers.trading.settlement import settlement_legs_cte

VIEW_COLUMNS = VIEW_SQL.split(", ")  # OrderView's fields, in order

# per user of the batch ($2, in order), one row per eligible wallet (one of NULL wallet columns when none): the
# KYC case, AVAILABLE cash in the quote currency, and the wallet columns of gate.WALLETS (open sells and pending
# outgoing for every wallet: a user may both buy and sell in one batch)
_USER_COLUMNS = {
    "u_user": "u.uid",
    "u_kyc": "k.status::text",
    "u_kyc_expires": "k.expires_at",
    "u_cash": "la.balance",
    "u_address": "w.address",
    "u_balance": "w.balance",
    "u_frozen_amount": "w.frozen_amount",
    "u_frozen": "w.frozen",
    "u_open_qty": "w.open_qty",
    "u_pending": "w.pending",
}
_BOOK_SIDE = """
LEFT JOIN LATERAL (
    SELECT {aggs} FROM (
        SELECT {view}, {barred} FROM orders o
        WHERE o.market_id = m.id AND o.side = '{side}' AND o.status IN ('NEW', 'PARTIALLY_FILLED')
        ORDER BY o.price {direction}, o.seq ASC LIMIT $5) r
) {alias} ON true"""


def _book_side(side: str, direction: str, alias: str) -> str:
    aggs = ", ".join(
        f"array_agg(r.{c} ORDER BY r.price {direction}, r.seq) AS {alias}_{c}" for c in (*VIEW_COLUMNS, "barred")
    )
    view = ", ".join("o." + c for c in VIEW_COLUMNS)
    barred = BARRED_SQL.replace("{o}", "o")
    return _BOOK_SIDE.format(aggs=aggs, view=view, barred=barred, side=side, direction=direction, alias=alias)


# $1 market, $2 the batch's users, ($3, $4) its (user, clientOrderId) pairs, $5 how many resting orders per side,
# $6 the batch's UTC days; with the market's risk limits (risk.LIMITS_SQL's columns for the controls the in-memory
# path applies: the last trade's price, the users' order value on those days). One row; none when the market does
# not exist.
READ = (
    """
SELECT m.id, m.status, m.base_token_id, m.chain_id, m.token_address, m.base_decimals, m.quote_currency, m.tick_size,
       m.lot_size, m.min_notional, m.maker_fee_bps, m.taker_fee_bps, t.paused, t.identity_registry,
       rl.market_id IS NOT NULL AS rl_present, rl.price_band_bps AS rl_band, rl.reference_price AS rl_reference,
       rl.max_order_quantity AS rl_max_qty, rl.max_order_notional AS rl_max_notional,
       rl.daily_notional_limit AS rl_daily, rl.max_position AS rl_max_position, rl.breaker_move_bps AS rl_move,
       rl.breaker_window_s AS rl_window, rl.breaker_halt_s AS rl_halt, rl.halted_until AS rl_halted_until,
       rl.halt_reason AS rl_halt_reason, lt.price AS rl_last, NULL::numeric AS rl_breaker_ref,
       NULL::numeric AS rl_used, dn.users AS dn_users, dn.days AS dn_days,
       dn.used AS dn_used,
       mk.users AS mm_users, mk.maker AS mm_maker, mk.taker AS mm_taker, ex.users AS ex_users, ex.cids AS ex_cids,
       us.*, bb.*, bs.*
FROM markets m
JOIN tokens t ON t.id = m.base_token_id
LEFT JOIN market_risk_limits rl ON rl.market_id = m.id
LEFT JOIN LATERAL (SELECT tr.price FROM trades tr WHERE tr.market_id = m.id ORDER BY tr.seq DESC LIMIT 1) lt
       ON rl.market_id IS NOT NULL
LEFT JOIN LATERAL (SELECT array_agg(d.user_id) AS users, array_agg(d.day) AS days, array_agg(d.notional) AS used
                   FROM investor_daily_notional d
                   WHERE rl.daily_notional_limit IS NOT NULL AND d.market_id = m.id AND d.user_id = ANY($2::uuid[])
                     AND d.day = ANY($6::date[])) dn ON true
LEFT JOIN LATERAL (SELECT array_agg(x.user_id) AS users, array_agg(x.maker_fee_bps) AS maker,
                          array_agg(x.taker_fee_bps) AS taker
                   FROM market_makers x WHERE x.market_id = m.id AND x.active) mk ON true
LEFT JOIN LATERAL (SELECT array_agg(o.user_id) AS users, array_agg(o.client_order_id) AS cids
                   FROM unnest($3::uuid[], $4::varchar[]) AS c(u, cid)
                   JOIN orders o ON o.user_id = c.u AND o.client_order_id = c.cid) ex ON true
LEFT JOIN LATERAL (
    SELECT """
    + ", ".join(
        f"array_agg({expr} ORDER BY u.n, w.linked_at, w.address) AS {name}" for name, expr in _USER_COLUMNS.items()
    )
    + """
    FROM unnest($2::uuid[]) WITH ORDINALITY AS u(uid, n)
    -- OFFSET 0: one unique-index lookup per user (a generic plan without statistics would scan the table)
    LEFT JOIN LATERAL (SELECT kc.status, kc.expires_at FROM kyc_cases kc WHERE kc.user_id = u.uid OFFSET 0) k ON true
    LEFT JOIN ledger_accounts la ON la.owner_id = u.uid AND la.kind = 'AVAILABLE' AND la.currency = m.quote_currency
    LEFT JOIN LATERAL ("""
    + WALLETS.replace("{user}", "u.uid").replace("{sell}", "true")
    + """
    ) w ON true
) us ON true"""
    + _book_side("BUY", "DESC", "bb")
    + _book_side("SELL", "ASC", "bs")
    + """
WHERE m.id = $1"""
)

# $1 market; the new orders ($2..$16, in arrival order, in their final state; $16 updated_at, NULL: now()) with an
# 'order.place' audit row each ($17 request ids, $18 details); the trades ($19..$34 in fill order, $35 chain, $36
# token; numbered in the market in fill order) with their token legs and operations as settlement.TRADES_CTE writes
# them; the existing makers' final state ($37..$42); the changed levels ($43, $44), whose totals are read from before
# the statement (every part of one statement sees the same snapshot); the investors' daily order value added ($45
# user, $46 day, $47 value); the cash movements (the ledger's CTEs, $48..$59). Foreign keys (a trade's orders, an
# instruction's trade) are checked at the end of the statement, when every row exists.
_WRITE = (
    """
WITH o AS (INSERT INTO orders (id, market_id, user_id, client_order_id, side, type, time_in_force, price, quantity,
                               filled_quantity, status, reason, expires_at, wallet_address, reserved_cash, updated_at)
           SELECT x.id, $1, x.user_id, x.cid, x.side, x.type, x.tif, x.price, x.quantity, x.filled, x.status, x.reason,
                  x.expires_at, x.wallet, x.reserved, coalesce(x.updated_at, now())
           FROM unnest($2::uuid[], $3::uuid[], $4::varchar[], $5::order_side[], $6::order_type[],
                       $7::time_in_force[], $8::numeric[], $9::numeric[], $10::numeric[], $11::order_status[],
                       $12::varchar[], $13::timestamptz[], $14::varchar[], $15::numeric[], $16::timestamptz[])
                WITH ORDINALITY AS x(id, user_id, cid, side, type, tif, price, quantity, filled, status, reason,
                                     expires_at, wallet, reserved, updated_at, n)
           ORDER BY x.n RETURNING id, seq, created_at),
     a AS (INSERT INTO audit_log (actor_id, action, target_type, target_id, request_id, details)
           SELECT x.user_id, 'order.place', 'order', x.id::text, x.request_id, x.details::jsonb
           FROM unnest($2::uuid[], $3::uuid[], $17::varchar[], $18::text[]) AS x(id, user_id, request_id, details)),
     f AS (SELECT * FROM unnest($19::uuid[], $20::uuid[], $21::uuid[], $22::uuid[], $23::uuid[], $24::order_side[],
                                $25::numeric[], $26::numeric[], $27::numeric[], $28::numeric[], $29::uuid[],
                                $30::varchar[], $31::varchar[], $32::numeric[], $33::uuid[], $34::timestamptz[])
                  WITH ORDINALITY AS f(id, maker, taker, buyer, seller, taker_side, price, quantity, maker_fee,
                                       taker_fee, instruction, from_wallet, to_wallet, units, op, created_at, n)),
     ms AS (UPDATE markets SET trade_sequence = trade_sequence + cardinality($19::uuid[])
            WHERE id = $1 AND cardinality($19::uuid[]) > 0 RETURNING trade_sequence - cardinality($19::uuid[]) AS n),
     t AS (INSERT INTO trades (id, market_id, maker_order_id, taker_order_id, buyer_id, seller_id, taker_side, price,
                               quantity, maker_fee, taker_fee, settlement, created_at, market_sequence)
           SELECT f.id, $1, f.maker, f.taker, f.buyer, f.seller, f.taker_side, f.price, f.quantity, f.maker_fee,
                  f.taker_fee, 'PENDING', f.created_at, (SELECT ms.n FROM ms) + f.n
           FROM f ORDER BY f.n RETURNING id, seq, market_sequence),"""
    + settlement_legs_cte("$35", "$36")
    + """,
     u AS (UPDATE orders r SET filled_quantity = x.filled, status = x.status, reason = x.reason,
                               reserved_cash = x.reserved, updated_at = x.updated_at
           FROM unnest($37::uuid[], $38::numeric[], $39::order_status[], $40::varchar[], $41::numeric[],
                       $42::timestamptz[]) AS x(id, filled, status, reason, reserved, updated_at)
           WHERE r.id = x.id AND r.market_id = $1 RETURNING r.id),
     l AS (SELECT array_agg(g.side::text) AS sides, array_agg(g.price) AS prices, array_agg(g.qty) AS qtys FROM (
               SELECT r.side, r.price, sum(r.quantity - r.filled_quantity) AS qty FROM orders r
               WHERE r.market_id = $1 AND r.status IN ('NEW', 'PARTIALLY_FILLED')
                 AND (r.side, r.price) IN (SELECT * FROM unnest($43::order_side[], $44::numeric[]))
               GROUP BY r.side, r.price) g),
     d AS (INSERT INTO investor_daily_notional (market_id, user_id, day, notional)
           SELECT $1, x.user_id, x.day, sum(x.value) FROM unnest($45::uuid[], $46::date[], $47::numeric[])
                AS x(user_id, day, value)
           GROUP BY x.user_id, x.day
           ON CONFLICT (market_id, user_id, day)
           DO UPDATE SET notional = investor_daily_notional.notional + EXCLUDED.notional){cash}
SELECT (SELECT array_agg(o.id) FROM o) AS order_ids, (SELECT array_agg(o.seq) FROM o) AS order_seqs,
       (SELECT array_agg(o.created_at) FROM o) AS order_created,
       (SELECT array_agg(t.id) FROM t) AS trade_ids, (SELECT array_agg(t.seq) FROM t) AS trade_seqs,
       (SELECT array_agg(t.market_sequence) FROM t) AS trade_market_seqs, (SELECT count(*) FROM u) AS makers,
       l.sides, l.prices, l.qtys
FROM l"""
)
FIRST_CASH_PARAM = 48
WRITE = _WRITE.replace("{cash}", "")
WRITE_CASH = _WRITE.replace("{cash}", "," + ledger.movements_cte(FIRST_CASH_PARAM))

BUMP = "UPDATE markets SET book_sequence = book_sequence + $2 WHERE id = $1 RETURNING book_sequence"
