"""The cap table of a token at a past block or date, from the indexed Transfer events.

Who may read it, and what they see of each holder (`access`):
- ADMIN and COMPLIANCE: every token; holder wallet, balance, percentage and the investor behind the wallet (user id,
  email, KYC country); COMPLIANCE signed in interactively also the KYC full name (the rule of resolvers/identity/kyc.py:
  personal fields only for COMPLIANCE, never through an API key);
- the ISSUER of the token's asset: its own tokens only; wallet, balance, percentage, user id and KYC country (no
  email, no name);
- anyone else (investors, other issuers): FORBIDDEN.

How balances at block N are computed, in one SQL statement (one snapshot, so a running indexer cannot tear it):
- FORWARD: sum every transfer of the token up to N, credited to `to` and debited from `from` (one pass over the
  index ix_token_transfers_token_block, chain_id/token/block range): cost ~ transfers up to N;
- REVERSE: the holdings table (the balances at the indexed block) minus every transfer after N: cost ~ holders +
  transfers after N. A recent block on a long history reads a few rows instead of the whole history.
- CHECKPOINT: the balances stored at the nearest checkpoint at or below N (resolvers/reports/checkpoints.py: every
  CHECKPOINT_EVERY transfers, at finalized blocks) plus the transfers since: cost ~ holders + at most that many.
The cheapest is chosen from bounded index-only counts (`choose_strategy`). All give the same rows
(tests/reports/test_cap_table_anvil.py checks each against balanceOf at every block).

A date is resolved to the last stored block at or before it (index ix_blocks_chain_timestamp): the indexer keeps
every block that has an event, so no transfer lies between that block and the date. A block above the token's
indexed block is BAD_USER_INPUT; a date after the indexed block's time answers at the indexed block, and `atBlock` /
`atBlockTime` say so. Rows above the chain's finalized block may still change with a reorg: `final` says whether N
is final.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

from sqlalchemy.ext.asyncio import AsyncSession

from chains.inputs import ZERO_ADDRESS
from core.encryption import FieldCipher
from core.errors import BadUserInput, Forbidden, NotFound
from models.identity import KycCase, Role
from models.index_status import indexed_block_for
from resolvers.holdings import parse_address, parse_block, parse_chain_id
from resolvers.raw_sql import pg
from resolvers.viewer import Viewer

log = logging.getLogger("rwa.reports")

PROBE_LIMIT = 50_000  # rows a bounded count reads at most when choosing the strategy
PERCENT_PLACES = Decimal("0.000001")
_EXACT = Context(prec=100)
MAX_ROWS = 10_000  # per GraphQL answer; the CSV download has every holder


class IdentityLevel(str, enum.Enum):
    FULL = "FULL"  # ADMIN, COMPLIANCE: user id, email, KYC country (+ full name for COMPLIANCE, interactive)
    ISSUER = "ISSUER"  # the asset's issuer: user id and KYC country


class Strategy(str, enum.Enum):
    FORWARD = "FORWARD"
    REVERSE = "REVERSE"
    CHECKPOINT = "CHECKPOINT"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: uuid.UUID
    chain_id: int
    address: str
    symbol: str
    decimals: int
    start_block: int
    asset_id: uuid.UUID | None
    issuer_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class CapTableRow:
    holder: str
    balance: int  # raw units
    amount: Decimal  # balance / 10**decimals
    percent: Decimal  # of the supply at the block, 6 places
    user_id: uuid.UUID | None = None
    email: str | None = None
    full_name: str | None = None
    kyc_country: str | None = None


@dataclass(frozen=True, slots=True)
class CapTable:
    token: TokenInfo
    at_block: int
    at_block_time: datetime | None
    indexed_block: int
    final: bool
    total_supply: int  # raw units: the sum of every holder's balance at the block
    holder_count: int
    rows: list[CapTableRow]
    identity: IdentityLevel
    strategy: Strategy
    names: bool  # whether full names were readable (COMPLIANCE, interactive)

    @property
    def total_amount(self) -> Decimal:
        return units_to_amount(self.total_supply, self.token.decimals)


def units_to_amount(units: int, decimals: int) -> Decimal:
    return Decimal(units).scaleb(-decimals, _EXACT)  # the default context (28 digits) would round uint256 values


# --- access ----------------------------------------------------------------------------------------


def require_cap_table_role(viewer: Viewer) -> None:
    """Before any lookup: a caller who could never read a cap table learns nothing about tokens."""
    viewer.require_role(Role.ADMIN.value, Role.COMPLIANCE.value, Role.ISSUER.value)


def access(viewer: Viewer, token: TokenInfo) -> IdentityLevel:
    if viewer.has_role(Role.ADMIN.value, Role.COMPLIANCE.value):
        return IdentityLevel.FULL
    if viewer.has_role(Role.ISSUER.value) and token.issuer_id is not None and token.issuer_id == viewer.user_id:
        return IdentityLevel.ISSUER
    raise Forbidden("a cap table is for ADMIN, COMPLIANCE and the issuer of the token's asset")


def interactive(viewer: Viewer) -> bool:
    """A person's own login: not an API key, not an OAuth client token acting for the account."""
    return viewer.user_id is not None and not viewer.read_only and getattr(viewer, "scopes", None) is None


def may_read_names(viewer: Viewer) -> bool:
    return viewer.has_role(Role.COMPLIANCE.value) and interactive(viewer)


# --- statements --------------------------------------------------------------------------------------

_TOKEN = """
SELECT t.id, t.chain_id, t.address, t.symbol, t.decimals, t.start_block, t.asset_id, a.issuer_id
FROM tokens t LEFT JOIN assets a ON a.id = t.asset_id
WHERE t.chain_id = $1 AND t.address = $2"""

_BLOCK_AT_TIME = """
SELECT number, timestamp FROM blocks WHERE chain_id = $1 AND timestamp <= $2
ORDER BY timestamp DESC, number DESC LIMIT 1"""

_BLOCK_TIME = "SELECT timestamp FROM blocks WHERE chain_id = $1 AND number = $2"

_FINALIZED = "SELECT finalized_block FROM indexer_cursors WHERE chain_id = $1"

# Bounded counts (index-only), each reading at most $4 rows: REVERSE's or FORWARD's or CHECKPOINT's rows can only
# win when fewer than the best found so far, so no count reads further than that.
_PROBE_BEFORE = """
SELECT count(*) FROM (SELECT 1 FROM token_transfers WHERE chain_id = $1 AND token_address = $2
                      AND block_number <= $3 LIMIT $4) b"""
_PROBE_AFTER = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM holdings WHERE chain_id = $1 AND token_address = $2 LIMIT $4) h)
     + (SELECT count(*) FROM (SELECT 1 FROM token_transfers WHERE chain_id = $1 AND token_address = $2
                              AND block_number > $3 LIMIT $4) a)"""
_PROBE_SINCE = """
SELECT count(*) FROM (SELECT 1 FROM token_transfers WHERE chain_id = $1 AND token_address = $2
                      AND block_number > $5 AND block_number <= $3 LIMIT $4) c"""
_CHECKPOINT_BELOW = """
SELECT block_number, holders FROM cap_table_checkpoints WHERE chain_id = $1 AND token_address = $2
  AND block_number <= $3
ORDER BY block_number DESC LIMIT 1"""

# Each transfer is read once and split into its credit and its debit (LATERAL VALUES), then grouped per address.
_FORWARD = f"""
SELECT v.holder, sum(v.delta) AS balance
FROM token_transfers t CROSS JOIN LATERAL (VALUES (t.to_address, t.value), (t.from_address, -t.value)) AS v(holder, delta)
WHERE t.chain_id = $1 AND t.token_address = $2 AND t.block_number <= $3 AND v.holder <> '{ZERO_ADDRESS}'
GROUP BY v.holder HAVING sum(v.delta) <> 0"""

_REVERSE = f"""
SELECT m.holder, sum(m.delta) AS balance FROM (
    SELECT h.holder, h.balance AS delta FROM holdings h WHERE h.chain_id = $1 AND h.token_address = $2
    UNION ALL
    SELECT v.holder, -v.delta
    FROM token_transfers t
    CROSS JOIN LATERAL (VALUES (t.to_address, t.value), (t.from_address, -t.value)) AS v(holder, delta)
    WHERE t.chain_id = $1 AND t.token_address = $2 AND t.block_number > $3
) m
WHERE m.holder <> '{ZERO_ADDRESS}'
GROUP BY m.holder HAVING sum(m.delta) <> 0"""

# the checkpoint's balances ($4) plus the transfers after it, up to the block
_FROM_CHECKPOINT = f"""
SELECT m.holder, sum(m.delta) AS balance FROM (
    SELECT c.holder, c.balance AS delta FROM cap_table_checkpoint_balances c
    WHERE c.chain_id = $1 AND c.token_address = $2 AND c.block_number = $4
    UNION ALL
    SELECT v.holder, v.delta
    FROM token_transfers t
    CROSS JOIN LATERAL (VALUES (t.to_address, t.value), (t.from_address, -t.value)) AS v(holder, delta)
    WHERE t.chain_id = $1 AND t.token_address = $2 AND t.block_number > $4 AND t.block_number <= $3
) m
WHERE m.holder <> '{ZERO_ADDRESS}'
GROUP BY m.holder HAVING sum(m.delta) <> 0"""

_IDENTITIES = """
SELECT w.address, u.id, u.email, k.id AS case_id, k.country, k.personal_data
FROM wallets w JOIN users u ON u.id = w.user_id LEFT JOIN kyc_cases k ON k.user_id = u.id
WHERE w.address = ANY($1::varchar[])"""


# --- the cap table -----------------------------------------------------------------------------------


async def load_token(session: AsyncSession, chain_id: int, token: str) -> TokenInfo:
    row = await (await pg(session)).fetchrow(_TOKEN, chain_id, token)
    if row is None:
        raise NotFound(f"no token {token} on chain {chain_id}")
    return TokenInfo(
        row["id"],
        row["chain_id"],
        row["address"],
        row["symbol"],
        row["decimals"],
        int(row["start_block"]),
        row["asset_id"],
        row["issuer_id"],
    )


async def resolve_block(
    session: AsyncSession, token: TokenInfo, at_block: int | None, at_time: datetime | None, now: datetime | None = None
) -> tuple[int, datetime | None, int]:
    """(block, its time when stored, the token's indexed block) for the arguments; BAD_USER_INPUT when out of range."""
    if at_block is not None and at_time is not None:
        raise BadUserInput("pass atBlock or atTime, not both", field="atTime")
    parse_block(at_block, "atBlock")
    indexed = await indexed_block_for(session, token.chain_id, token.address)
    if indexed is None:
        raise BadUserInput(f"chain {token.chain_id} has not been indexed yet", field="chainId")
    conn = await pg(session)
    if at_time is not None:
        if at_time.tzinfo is None:
            raise BadUserInput("atTime needs a time zone offset", field="atTime")
        if at_time > (now or datetime.now(UTC)):
            raise BadUserInput("atTime is in the future", field="atTime")
        row = await conn.fetchrow(_BLOCK_AT_TIME, token.chain_id, at_time)
        if row is None:  # before any stored block of the chain: before the token's history
            return max(token.start_block - 1, 0), None, indexed
        if int(row["number"]) >= indexed:
            return indexed, await conn.fetchval(_BLOCK_TIME, token.chain_id, indexed), indexed
        return int(row["number"]), row["timestamp"], indexed
    if at_block is None:
        at_block = indexed
    elif at_block > indexed:
        raise BadUserInput(
            f"atBlock {at_block} is above the indexed block {indexed}", field="atBlock", indexedBlock=indexed
        )
    return at_block, await conn.fetchval(_BLOCK_TIME, token.chain_id, at_block), indexed


@dataclass(frozen=True, slots=True)
class Plan:
    strategy: Strategy
    checkpoint: int | None = None  # the checkpoint block CHECKPOINT starts from


async def checkpoint_below(session: AsyncSession, token: TokenInfo, block: int) -> tuple[int, int] | None:
    """(block, holders) of the nearest checkpoint at or below `block` (resolvers/reports/checkpoints.py)."""
    row = await (await pg(session)).fetchrow(_CHECKPOINT_BELOW, token.chain_id, token.address, block)
    return None if row is None else (int(row["block_number"]), int(row["holders"]))


async def choose_strategy(session: AsyncSession, token: TokenInfo, block: int, indexed: int) -> Plan:
    """The strategy reading the fewest rows: FORWARD (transfers up to the block), REVERSE (holders + transfers after
    it) or CHECKPOINT (the nearest checkpoint's holders + the transfers since). Each count stops at the best cost
    found so far (and at PROBE_LIMIT), so choosing costs at most a few times the chosen strategy's rows."""
    if block >= indexed:
        return Plan(Strategy.REVERSE)  # the holdings table as it is
    conn = await pg(session)
    args = (token.chain_id, token.address, block)
    candidates: list[tuple[int, int, Plan]] = []
    bound = PROBE_LIMIT
    checkpoint = await checkpoint_below(session, token, block)
    if checkpoint is not None:
        since = int(await conn.fetchval(_PROBE_SINCE, *args, bound, checkpoint[0]))
        if since < bound:
            cost = checkpoint[1] + since
            candidates.append((cost, 0, Plan(Strategy.CHECKPOINT, checkpoint[0])))
            bound = max(min(bound, cost), 1)
    before = int(await conn.fetchval(_PROBE_BEFORE, *args, bound))
    if before < bound:
        candidates.append((before, 1, Plan(Strategy.FORWARD)))
        bound = max(before, 1)
    after = int(await conn.fetchval(_PROBE_AFTER, *args, bound))
    if after < bound:
        candidates.append((after, 2, Plan(Strategy.REVERSE)))
    if candidates:
        return min(candidates, key=lambda c: (c[0], c[1]))[2]
    # no checkpoint and both sides past PROBE_LIMIT: the nearer end of the range
    return Plan(Strategy.REVERSE if indexed - block < block - token.start_block else Strategy.FORWARD)


async def balances_at(session: AsyncSession, token: TokenInfo, block: int, plan: Plan) -> dict[str, int]:
    conn = await pg(session)
    if plan.strategy is Strategy.CHECKPOINT and plan.checkpoint is not None:
        rows = await conn.fetch(_FROM_CHECKPOINT, token.chain_id, token.address, block, plan.checkpoint)
    else:
        sql = _REVERSE if plan.strategy is Strategy.REVERSE else _FORWARD
        rows = await conn.fetch(sql, token.chain_id, token.address, block)
    return {r["holder"]: int(r["balance"]) for r in rows}


def _percent(balance: int, total: int) -> Decimal:
    if total <= 0:
        return Decimal(0)
    with localcontext(_EXACT):
        return (Decimal(balance) * 100 / Decimal(total)).quantize(PERCENT_PLACES, rounding=ROUND_HALF_EVEN)


def _full_name(
    cipher: FieldCipher, user_cipher: FieldCipher | None, case_id: uuid.UUID | None, personal_data: bytes | None
) -> str | None:
    """The KYC full name, under the owner's data key (resolvers/privacy/keys.py); None when unreadable: erased
    (crypto-shredded) or a key this process lacks."""
    if case_id is None or personal_data is None:
        return None
    from resolvers.identity.kyc import decrypt_details

    try:
        details = decrypt_details(cipher, KycCase(id=case_id, personal_data=personal_data), user_cipher)
    except Exception:  # the report goes on without the name
        log.info("cap table: KYC details of case %s are not readable", case_id)
        return None
    return details.full_name if details is not None else None


async def cap_table(
    session: AsyncSession,
    viewer: Viewer,
    *,
    chain_id: int,
    token: str,
    at_block: int | None = None,
    at_time: datetime | None = None,
    cipher: FieldCipher | None = None,
    strategy: Strategy | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> CapTable:
    """Holders of `token` at the end of `at_block` (or at `at_time`; default: the indexed block), largest first.
    `limit` keeps the largest holders (the totals still cover everyone); `strategy` forces one (tests)."""
    require_cap_table_role(viewer)
    chain_id = parse_chain_id(chain_id)
    address = parse_address(token, "token")
    if limit is not None and not 0 <= limit <= MAX_ROWS:
        raise BadUserInput(f"first must be between 0 and {MAX_ROWS}", field="first")
    info = await load_token(session, chain_id, address)
    level = access(viewer, info)
    block, block_time, indexed = await resolve_block(session, info, at_block, at_time, now)
    if strategy is None:
        plan = await choose_strategy(session, info, block, indexed)
    elif strategy is Strategy.CHECKPOINT:  # forced (tests): from the nearest checkpoint, else from the start
        checkpoint = await checkpoint_below(session, info, block)
        plan = Plan(Strategy.CHECKPOINT, checkpoint[0]) if checkpoint else Plan(Strategy.FORWARD)
    else:
        plan = Plan(strategy)
    balances = await balances_at(session, info, block, plan)
    finalized = await (await pg(session)).fetchval(_FINALIZED, chain_id)
    total = sum(balances.values())
    ordered = sorted(balances.items(), key=lambda kv: (-kv[1], kv[0]))
    if limit is not None:
        ordered = ordered[:limit]
    names = cipher is not None and level is IdentityLevel.FULL and may_read_names(viewer)
    identities = {}
    if ordered:
        identities = {
            r["address"]: r for r in await (await pg(session)).fetch(_IDENTITIES, [holder for holder, _ in ordered])
        }
    user_ciphers: dict[uuid.UUID, FieldCipher | None] = {}
    if names and cipher is not None:
        from resolvers.privacy.keys import ciphers_for

        with_data = [r["id"] for r in identities.values() if r["personal_data"] is not None]
        try:
            user_ciphers = await ciphers_for(session, cipher, with_data) if with_data else {}
        except Exception:  # a data key wrapped under a master key this process lacks: no names, the table stands
            log.warning("cap table: the holders' data keys could not be unwrapped; names left out")
            user_ciphers = {}
    rows = []
    for holder, balance in ordered:
        who = identities.get(holder)
        amount, percent = units_to_amount(balance, info.decimals), _percent(balance, total)
        if who is None:
            rows.append(CapTableRow(holder, balance, amount, percent))
        elif level is IdentityLevel.ISSUER:
            rows.append(CapTableRow(holder, balance, amount, percent, user_id=who["id"], kyc_country=who["country"]))
        else:
            rows.append(
                CapTableRow(
                    holder,
                    balance,
                    amount,
                    percent,
                    user_id=who["id"],
                    email=who["email"],
                    kyc_country=who["country"],
                    full_name=_full_name(cipher, user_ciphers.get(who["id"]), who["case_id"], who["personal_data"])
                    if names and cipher is not None
                    else None,
                )
            )
    return CapTable(
        token=info,
        at_block=block,
        at_block_time=block_time,
        indexed_block=indexed,
        final=finalized is not None and block <= int(finalized),
        total_supply=total,
        holder_count=len(balances),
        rows=rows,
        identity=level,
        strategy=plan.strategy,
        names=names,
    )
