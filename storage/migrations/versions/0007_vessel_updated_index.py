"""An index on vessel.updated_at: every open common operating picture asks for its latest value each poll.

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_vessel_updated_at", "vessel", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_vessel_updated_at", table_name="vessel")
