"""SQLAlchemy models shared by the API, the indexer and the workers. Import every model module here so that
`Base.metadata` is complete for migrations and the drift test."""

from models import (  # noqa: F401 (imported for their side effects)
    assets,
    chain,
    identity,
    issuance,
    ledger,
    oauth,
    operations,
    payments,
    privacy,
    reports,
    tokens,
    trading,
    withdrawals,
)
from models.base import Base

__all__ = ["Base"]
