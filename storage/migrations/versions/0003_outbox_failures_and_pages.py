"""Outbox rows remember since when they fail and how many unplanned errors they met (dead-lettering), and
which pages of a long message are already posted.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failing_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("unexpected_errors", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("page_ids", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("page_ids")
        batch_op.drop_column("unexpected_errors")
        batch_op.drop_column("failing_since")
