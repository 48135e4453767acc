"""The watch: supervisors' shifts; conflicts snoozed.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "watch_shift",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("zone_code", _S(length=8), nullable=False),
        sa.Column("person", _S(length=255), nullable=False),
        sa.Column("name", _S(length=200), nullable=False),
        sa.Column("agency_code", _S(length=24), nullable=False),
        sa.Column("started_at", _T(), nullable=False),
        sa.Column("until", _T(), nullable=True),
        sa.Column("ended_at", _T(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_watch_shift_zone_open", "watch_shift", ["zone_code", "ended_at"])
    with op.batch_alter_table("conflict") as batch:
        batch.add_column(sa.Column("snoozed_until", _T(), nullable=True))
        batch.add_column(sa.Column("snoozed_by", _S(length=255), nullable=True))
        batch.add_column(sa.Column("snooze_reason", _S(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conflict") as batch:
        batch.drop_column("snooze_reason")
        batch.drop_column("snoozed_by")
        batch.drop_column("snoozed_until")
    op.drop_table("watch_shift")
