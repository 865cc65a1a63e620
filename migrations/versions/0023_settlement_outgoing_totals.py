"""settlement outgoing totals

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06

The compliance gate subtracts from a seller's indexed balance what its unfinished settlement instructions will take
away (resolvers/trading/gate.py). It summed those instructions one by one, each with its operation and an indexed
transfer lookup: O(unfinished instructions of the wallet) on every sell, which grows while the agent lags (2.5 ms
per sell at 500 unfinished). Now `settlement_outgoing` keeps, per (chain, token, wallet), the amount of the
instructions that are PENDING or SUBMITTED, maintained by statement-level triggers on `settlement_instructions`
(so every writer keeps it: the matching statement, the agent's confirmations and failures, tests), one upsert per
statement and wallet, in key order. The gate reads that total and walks only the instructions that may already be
indexed: those whose operation has a transaction hash and is not final (`ix_chain_operations_unfinished_hashes`)
or that carry a hash themselves (`ix_settlement_instructions_pending_hash`).
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_OPEN = "('PENDING', 'SUBMITTED')"


def upgrade() -> None:
    op.execute("""
        CREATE TABLE settlement_outgoing (
            chain_id integer NOT NULL,
            token_address varchar(42) COLLATE "C" NOT NULL,
            wallet varchar(42) COLLATE "C" NOT NULL,
            amount numeric(78, 0) NOT NULL,
            CONSTRAINT pk_settlement_outgoing PRIMARY KEY (chain_id, token_address, wallet)
        )""")
    op.execute(f"""
        INSERT INTO settlement_outgoing (chain_id, token_address, wallet, amount)
        SELECT chain_id, token_address, from_wallet, sum(amount) FROM settlement_instructions
        WHERE status IN {_OPEN} GROUP BY chain_id, token_address, from_wallet""")
    # `delta` is the change per wallet, built from the statement's transition tables
    upsert = """
            INSERT INTO settlement_outgoing AS so (chain_id, token_address, wallet, amount)
            SELECT chain_id, token_address, wallet, sum(amount) FROM ({delta}) d
            GROUP BY chain_id, token_address, wallet HAVING sum(amount) <> 0
            ORDER BY chain_id, token_address, wallet
            ON CONFLICT (chain_id, token_address, wallet) DO UPDATE SET amount = so.amount + EXCLUDED.amount"""
    added = f"SELECT chain_id, token_address, from_wallet AS wallet, amount FROM new_rows WHERE status IN {_OPEN}"
    removed = f"SELECT chain_id, token_address, from_wallet AS wallet, -amount AS amount FROM old_rows WHERE status IN {_OPEN}"
    for event, name, delta in (
        ("INSERT", "ins", added),
        ("UPDATE", "upd", f"{added} UNION ALL {removed}"),
        ("DELETE", "del", removed),
    ):
        op.execute(f"""
            CREATE FUNCTION rwa_settlement_outgoing_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {upsert.format(delta=delta)};
                RETURN NULL;
            END $$""")
        tables = {
            "INSERT": "NEW TABLE AS new_rows",
            "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            "DELETE": "OLD TABLE AS old_rows",
        }[event]
        op.execute(f"""
            CREATE TRIGGER settlement_outgoing_{name} AFTER {event} ON settlement_instructions
            REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION rwa_settlement_outgoing_{name}()""")
    op.execute(f"""
        CREATE INDEX ix_settlement_instructions_pending_hash ON settlement_instructions
        (chain_id, token_address, from_wallet) WHERE status IN {_OPEN} AND tx_hash IS NOT NULL""")
    op.execute("""
        CREATE INDEX ix_chain_operations_unfinished_hashes ON chain_operations (chain_id)
        WHERE tx_hashes <> '{}' AND state NOT IN ('CONFIRMED', 'FAILED', 'CANCELED')""")


def downgrade() -> None:
    op.execute("DROP INDEX ix_chain_operations_unfinished_hashes")
    op.execute("DROP INDEX ix_settlement_instructions_pending_hash")
    for name in ("ins", "upd", "del"):
        op.execute(f"DROP TRIGGER settlement_outgoing_{name} ON settlement_instructions")
        op.execute(f"DROP FUNCTION rwa_settlement_outgoing_{name}()")
    op.execute("DROP TABLE settlement_outgoing")
