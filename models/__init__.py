"""SQLAlchemy models shared by the API, the indexer and the workers. Import every model module here so that
`Base.metadata` is complete for migrations and the drift test."""

from models.base import Base
from models import identity  # noqa: F401
from models import chain, tokens  # noqa: F401
from models import assets  # noqa: F401
from models import ledger  # noqa: F401
from models import trading  # noqa: F401
from models import payments  # noqa: F401
from models import operations  # noqa: F401
from models import withdrawals  # noqa: F401
from models import issuance  # noqa: F401
from models import oauth  # noqa: F401
from models import privacy  # noqa: F401
from models import reports  # noqa: F401

__all__ = ["Base"]
