"""Tokens of the common operating picture (login links, page sessions, calendar feeds).

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "cop_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", _S(length=16), nullable=False),
        sa.Column("token_hash", _S(length=64), nullable=False),
        sa.Column("user_id", _S(length=255), nullable=False),
        sa.Column("zone_code", _S(length=8), nullable=False),
        sa.Column("created_at", _T(), nullable=False),
        sa.Column("expires_at", _T(), nullable=True),
        sa.Column("used_at", _T(), nullable=True),
        sa.Column("revoked_at", _T(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_cop_token_user_kind", "cop_token", ["user_id", "kind"])


def downgrade() -> None:
    op.drop_table("cop_token")
