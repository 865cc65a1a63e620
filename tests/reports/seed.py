"""Rows for report tests: a token of an issuer's asset with indexed transfers/holdings/blocks, investors with KYC
cases (encrypted details) and linked wallets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from eth_utils import to_checksum_address
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.encryption import FieldCipher
from models.assets import Asset, AssetStatus, AssetType
from models.chain import Block, IndexerCursor
from models.identity import KycCase, KycStatus, Wallet
from models.tokens import Holding, Token, TokenKind, TokenTransfer
from resolvers.identity.kyc import DocumentType, KycDetails, encrypt_details
from resolvers.privacy.keys import cipher_for

TOKEN = to_checksum_address("0x" + "ab" * 20)
ZERO = "0x" + "0" * 40
ALICE, BOB, CAROL = (to_checksum_address(f"0x{n:040x}") for n in (0xA11CE, 0xB0B, 0xCA201))
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BIG = 10**30  # beyond 64 bits and beyond Decimal's default 28 digits
# (block, log index, from, to, value)
TRANSFERS = [
    (10, 0, ZERO, ALICE, BIG),
    (11, 0, ALICE, BOB, 400),
    (11, 1, ALICE, CAROL, 100),
    (12, 3, BOB, ALICE, 50),
    (14, 0, CAROL, ZERO, 100),  # burn: Carol leaves the table
]


def block_time(block: int) -> datetime:
    return T0 + timedelta(seconds=12 * block)


@dataclass
class Seeded:
    token_id: uuid.UUID
    asset_id: uuid.UUID
    alice_user: uuid.UUID
    bob_user: uuid.UUID


async def seed_token(
    session_factory: async_sessionmaker[AsyncSession],
    cipher: FieldCipher,
    issuer_id: uuid.UUID,
    alice_user: uuid.UUID,
    bob_user: uuid.UUID,
    indexed: int = 14,
) -> Seeded:
    balances: dict[str, int] = {}
    async with session_factory() as s:
        asset = Asset(
            id=uuid.uuid4(),
            issuer_id=issuer_id,
            name="Dock 7",
            type=AssetType.REAL_ESTATE,
            status=AssetStatus.ACTIVE,
            jurisdiction="DE",
            currency="EUR",
        )
        s.add(asset)
        await s.flush()
        token = Token(
            id=uuid.uuid4(),
            chain_id=1,
            address=TOKEN,
            kind=TokenKind.SECURITY,
            asset_id=asset.id,
            name="Dock 7",
            symbol="DCK7",
            decimals=18,
            start_block=10,
        )
        s.add(token)
        for block, log, src, dst, value in TRANSFERS:
            s.add(
                TokenTransfer(
                    chain_id=1,
                    block_hash=f"0x{block:064x}",
                    log_index=log,
                    block_number=block,
                    block_time=block_time(block),
                    tx_hash=f"0x{block * 100 + log:064x}",
                    token_address=TOKEN,
                    from_address=src,
                    to_address=dst,
                    value=value,
                )
            )
            balances[src] = balances.get(src, 0) - value
            balances[dst] = balances.get(dst, 0) + value
        for block in sorted({t[0] for t in TRANSFERS}):
            s.add(
                Block(
                    chain_id=1,
                    number=block,
                    hash=f"0x{block:064x}",
                    parent_hash=f"0x{block - 1:064x}",
                    timestamp=block_time(block),
                )
            )
        for holder, balance in balances.items():
            if holder != ZERO:
                s.add(Holding(chain_id=1, token_address=TOKEN, holder=holder, balance=balance, updated_block=14))
        s.add(IndexerCursor(chain_id=1, indexed_block=indexed, head_block=20, safe_block=16, finalized_block=12))
        # Alice's details under her own data key (as KYC writes them since migration 0019), Bob's under the master
        # key (a row from before it)
        for user_id, wallet, name, country, own_key in (
            (alice_user, ALICE, "Alice Example", "FR", True),
            (bob_user, BOB, "Bob Example", "DE", False),
        ):
            s.add(Wallet(id=uuid.uuid4(), user_id=user_id, address=wallet))
            case_id = uuid.uuid4()
            details = KycDetails(
                full_name=name,
                date_of_birth=date(1990, 1, 1),
                country=country,
                document_type=DocumentType.PASSPORT,
                document_number="X1234567",
                address="1 Main St",
            )
            key = await cipher_for(s, cipher, user_id, create=True) if own_key else cipher
            assert key is not None
            s.add(
                KycCase(
                    id=case_id,
                    user_id=user_id,
                    status=KycStatus.APPROVED,
                    country=country,
                    personal_data=encrypt_details(key, case_id, details),
                )
            )
        await s.commit()
    return Seeded(token.id, asset.id, alice_user, bob_user)
