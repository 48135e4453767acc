"""The bot's own Matrix devices: each replica writes its device id and keys at start; the others trust exactly
those (bot/matrix/crypto.py), not every device that logs in with the bot's password.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "bot_device",
        sa.Column("user_id", _S(length=255), nullable=False),
        sa.Column("device_id", _S(length=255), nullable=False),
        sa.Column("curve25519", _S(length=64), nullable=False),
        sa.Column("ed25519", _S(length=64), nullable=False),
        sa.Column("registered_at", _T(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id"),
    )


def downgrade() -> None:
    op.drop_table("bot_device")
