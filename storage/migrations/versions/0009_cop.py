"""The operating picture at harbour scale: who asked for a token (agency and clearance, so a console's link shows
what the console shows), an index for revocations (open pages end at once), and each agency's colour per zone.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("cop_token") as t:
        t.add_column(sa.Column("agency_code", _S(length=32), nullable=True))
        t.add_column(sa.Column("clearance", _S(length=64), nullable=True))
    op.create_index("ix_cop_token_revoked_at", "cop_token", ["revoked_at"])
    op.create_table(
        "cop_colour",
        sa.Column("zone_code", _S(length=8), nullable=False),
        sa.Column("agency_code", _S(length=32), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("zone_code", "agency_code"),
        sa.UniqueConstraint("zone_code", "slot", name="uq_cop_colour_zone_slot"),
    )


def downgrade() -> None:
    op.drop_table("cop_colour")
    op.drop_index("ix_cop_token_revoked_at", table_name="cop_token")
    with op.batch_alter_table("cop_token") as t:
        t.drop_column("clearance")
        t.drop_column("agency_code")
