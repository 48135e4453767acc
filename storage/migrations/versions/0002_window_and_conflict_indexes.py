"""Covering index for the operation window look-up; conflict look-ups by operation.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_WINDOW = ["zone_code", "start_at", "end_at", "status", "min_lat", "max_lat", "min_lon", "max_lon"]


def upgrade() -> None:
    op.create_index("ix_operation_window", "operation", _WINDOW)
    op.drop_index("ix_operation_zone_start", table_name="operation")
    op.create_index("ix_conflict_op_a", "conflict", ["op_a"])
    op.create_index("ix_conflict_op_b", "conflict", ["op_b"])


def downgrade() -> None:
    op.drop_index("ix_conflict_op_b", table_name="conflict")
    op.drop_index("ix_conflict_op_a", table_name="conflict")
    op.create_index("ix_operation_zone_start", "operation", ["zone_code", "start_at"])
    op.drop_index("ix_operation_window", table_name="operation")
