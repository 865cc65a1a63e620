"""asset metadata in camelCase

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

The typed asset metadata (resolvers/assets/validation.py) follows the API's casing: `areaSqm`, not `area_sqm`.
Stored rows are renamed key by key (typed asset types only: OTHER keeps whatever keys its issuer chose).
"""

from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

RENAMES = {
    "area_sqm": "areaSqm", "property_type": "propertyType", "coupon_rate": "couponRate",
    "maturity_date": "maturityDate", "face_value": "faceValue", "management_fee_pct": "managementFeePct",
    "due_date": "dueDate",
}


def _rename(mapping: dict[str, str]) -> None:
    cases = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in mapping.items())
    keys = ", ".join(f"'{old}'" for old in mapping)
    op.execute(
        "UPDATE assets SET attributes = (SELECT jsonb_object_agg(CASE key " + cases + " ELSE key END, value) "
        "FROM jsonb_each(attributes)) "
        "WHERE type <> 'OTHER' AND jsonb_typeof(attributes) = 'object' AND attributes ?| array[" + keys + "]")


def upgrade() -> None:
    _rename(RENAMES)


def downgrade() -> None:
    _rename({new: old for old, new in RENAMES.items()})
