"""Vessels heard on AIS, their position history, notices of arrival.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "vessel",
        sa.Column("mmsi", _S(length=9), nullable=False),
        sa.Column("imo", _S(length=7), nullable=True),
        sa.Column("name", _S(length=40), nullable=True),
        sa.Column("call_sign", _S(length=16), nullable=True),
        sa.Column("ship_type", sa.Integer(), nullable=True),
        sa.Column("destination", _S(length=40), nullable=True),
        sa.Column("ais_eta", _T(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("sog", sa.Float(), nullable=True),
        sa.Column("cog", sa.Float(), nullable=True),
        sa.Column("heading", sa.Integer(), nullable=True),
        sa.Column("position_at", _T(), nullable=True),
        sa.Column("static_at", _T(), nullable=True),
        sa.Column("in_approach", _S(length=255), nullable=False),
        sa.Column("updated_at", _T(), nullable=False),
        sa.PrimaryKeyConstraint("mmsi"),
    )
    op.create_index("ix_vessel_imo", "vessel", ["imo"])
    op.create_index("ix_vessel_name", "vessel", ["name"])
    op.create_table(
        "vessel_position",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mmsi", _S(length=9), nullable=False),
        sa.Column("at", _T(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("sog", sa.Float(), nullable=True),
        sa.Column("cog", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_vessel_position_mmsi_at", "vessel_position", ["mmsi", "at"])
    op.create_index("ix_vessel_position_at", "vessel_position", ["at"])
    op.create_table(
        "arrival_notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("zone_code", _S(length=8), nullable=False),
        sa.Column("vessel_name", _S(length=120), nullable=False),
        sa.Column("imo", _S(length=7), nullable=True),
        sa.Column("mmsi", _S(length=9), nullable=True),
        sa.Column("call_sign", _S(length=16), nullable=True),
        sa.Column("flag", _S(length=60), nullable=True),
        sa.Column("eta", _T(), nullable=False),
        sa.Column("last_port", _S(length=120), nullable=True),
        sa.Column("cdc", sa.Boolean(), nullable=False),
        sa.Column("persons", sa.Integer(), nullable=True),
        sa.Column("submitted", _T(), nullable=True),
        sa.Column("imported_at", _T(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_arrival_notice_zone_eta", "arrival_notice", ["zone_code", "eta"])
    op.create_index("ix_arrival_notice_imo", "arrival_notice", ["imo"])
    op.create_index("ix_arrival_notice_mmsi", "arrival_notice", ["mmsi"])


def downgrade() -> None:
    op.drop_table("arrival_notice")
    op.drop_table("vessel_position")
    op.drop_table("vessel")
