"""SQLModel tables. Times are timezone-aware UTC (SQLModel stores them as UTC on both databases)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Ids are shown to users (OP-12, TGT-3, CF-7) and must never be reused, also after a delete on SQLite.
_NO_REUSE = {"sqlite_autoincrement": True}


class ZoneRow(SQLModel, table=True):
    __tablename__ = "zone"
    code: str = Field(primary_key=True, max_length=8)
    name: str
    district: str = Field(index=True)
    timezone: str
    lat: float
    lon: float


class AgencyRow(SQLModel, table=True):
    __tablename__ = "agency"
    code: str = Field(primary_key=True, max_length=24)
    name: str = ""
    clearance: str = "UNCLASS"  # comma-separated markings


class MemberRow(SQLModel, table=True):
    __tablename__ = "member"
    __table_args__ = (UniqueConstraint("platform_id", "agency_code"),)
    id: int | None = Field(default=None, primary_key=True)
    platform_id: str = Field(index=True, max_length=255)
    agency_code: str = Field(foreign_key="agency.code", max_length=24)
    role: str = "member"  # member | supervisor


class RoomRow(SQLModel, table=True):
    __tablename__ = "room"
    id: str = Field(primary_key=True, max_length=255)
    zone_code: str | None = Field(default=None, index=True, max_length=8)
    district: str | None = None
    kind: str = "joint"  # joint | watch | district | console
    clearance: str = "UNCLASS"


class OperationRow(SQLModel, table=True):
    __tablename__ = "operation"
    __table_args__ = (
        # The window look-up filters on every column here, so it reads the index and touches only matching rows.
        Index("ix_operation_window", "zone_code", "start_at", "end_at", "status", "min_lat", "max_lat", "min_lon",
              "max_lon"),
        Index("ix_operation_zone_vessel", "zone_code", "vessel_key"),
        Index("ix_operation_zone_status", "zone_code", "status"),
        _NO_REUSE,
    )
    id: int | None = Field(default=None, primary_key=True)
    zone_code: str = Field(max_length=8)
    agency_code: str = Field(max_length=24)
    type: str = Field(max_length=32)
    vessel_key: str | None = Field(default=None, max_length=96)
    lat: float | None = None
    lon: float | None = None
    radius_m: float = 500.0
    min_lat: float | None = None
    max_lat: float | None = None
    min_lon: float | None = None
    max_lon: float | None = None
    start_at: datetime
    end_at: datetime
    marking: str = "UNCLASS"
    status: str = "planned"
    note: str | None = Field(default=None, sa_column=Column(Text))
    contact: str | None = Field(default=None, max_length=200)
    outcome: str | None = Field(default=None, sa_column=Column(Text))
    created_by: str = Field(max_length=255)
    created_room: str | None = Field(default=None, max_length=255)
    created_at: datetime
    updated_at: datetime
    revision: int = 1


class TargetRow(SQLModel, table=True):
    __tablename__ = "target"
    __table_args__ = (Index("ix_target_zone_vessel_status", "zone_code", "vessel_key", "status"), _NO_REUSE)
    id: int | None = Field(default=None, primary_key=True)
    zone_code: str = Field(max_length=8)
    vessel_key: str = Field(max_length=96)
    name: str | None = Field(default=None, max_length=200)
    eta: datetime | None = None
    priority: str = "medium"
    reason: str | None = Field(default=None, sa_column=Column(Text))
    marking: str = "UNCLASS"
    status: str = Field(default="open", index=True)
    agency_code: str = Field(max_length=24)  # nominating agency
    nominated_by: str = Field(max_length=255)
    assigned_agency: str | None = Field(default=None, max_length=24)
    outcome: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    revision: int = 1


class EndorsementRow(SQLModel, table=True):
    __tablename__ = "endorsement"
    __table_args__ = (UniqueConstraint("target_id", "agency_code"),)
    id: int | None = Field(default=None, primary_key=True)
    target_id: int = Field(foreign_key="target.id", index=True)
    agency_code: str = Field(max_length=24)
    endorsed_by: str = Field(max_length=255)
    at: datetime


class ConflictRow(SQLModel, table=True):
    __tablename__ = "conflict"
    __table_args__ = (
        Index("ix_conflict_zone_status", "zone_code", "status"),
        Index("ix_conflict_op_a", "op_a"),
        Index("ix_conflict_op_b", "op_b"),
        _NO_REUSE,
    )
    id: int | None = Field(default=None, primary_key=True)
    zone_code: str = Field(max_length=8)
    kind: str = Field(max_length=16)
    key: str = Field(index=True, max_length=64)
    # Set while the conflict is open or acknowledged, NULL afterwards: the UNIQUE constraint is what makes
    # "raised once while open" hold even when two processes detect the same cause at once.
    open_key: str | None = Field(default=None, unique=True, max_length=64)
    op_a: int | None = None
    op_b: int | None = None
    target_id: int | None = None
    rev_a: int | None = None
    rev_b: int | None = None
    marking: str = "UNCLASS"
    status: str = "open"
    raised_at: datetime
    raised_by: str | None = Field(default=None, max_length=255)
    acked_by: str | None = Field(default=None, max_length=255)
    acked_at: datetime | None = None
    resolution: str | None = Field(default=None, max_length=16)
    resolved_by: str | None = Field(default=None, max_length=255)
    resolved_at: datetime | None = None
    note: str | None = Field(default=None, sa_column=Column(Text))
    closed_reason: str | None = Field(default=None, max_length=200)
    escalated_at: datetime | None = None
    # `conflicts snooze`: no escalation before this time; cleared when it wakes, or by an ack or resolution.
    snoozed_until: datetime | None = None
    snoozed_by: str | None = Field(default=None, max_length=255)
    snooze_reason: str | None = Field(default=None, max_length=500)


class AuditRow(SQLModel, table=True):
    """Append-only: each record carries the hash of the one before it (see storage.audit)."""

    __tablename__ = "audit"
    __table_args__ = (_NO_REUSE,)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str = Field(max_length=255)
    agency_code: str | None = Field(default=None, max_length=24)
    room: str | None = Field(default=None, max_length=255)
    zone_code: str | None = Field(default=None, index=True, max_length=8)
    command: str | None = Field(default=None, sa_column=Column(Text))
    action: str = Field(max_length=48)
    entity: str | None = Field(default=None, max_length=32)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class HandledEventRow(SQLModel, table=True):
    """One row per platform message acted on: a retried or replayed message finds its row and is skipped."""

    __tablename__ = "handled_event"
    __table_args__ = (UniqueConstraint("platform", "event_id"),)
    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    event_id: str = Field(max_length=255)
    at: datetime


class OutboxRow(SQLModel, table=True):
    """Every message the bot posts, stored before it is sent and marked sent only once the platform took it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "status", "room", "id"),
        Index("ix_outbox_origin", "origin_room", "origin_event"),
        Index("ix_outbox_remote", "room", "remote_id"),
        _NO_REUSE,
    )
    id: int | None = Field(default=None, primary_key=True)
    room: str = Field(max_length=255)
    kind: str = Field(max_length=16)  # reply | alert | relay | edit | redact | briefing | notice
    payload: str = Field(sa_column=Column(Text, nullable=False))  # JSON: text, html, blocks, reply_to, ...
    status: str = "pending"  # pending | sent | dead
    attempts: int = 0
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None = None
    remote_id: str | None = Field(default=None, max_length=255)
    last_error: str | None = Field(default=None, max_length=500)
    # A posting that must happen once (a briefing for a zone and day) records its key here before sending.
    dedupe_key: str | None = Field(default=None, unique=True, max_length=255)
    # For relays: the message this one copies, so edits, replies and redactions find their counterparts.
    origin_room: str | None = Field(default=None, max_length=255)
    origin_event: str | None = Field(default=None, max_length=255)
    # Since when the platform, while answering otherwise, has not taken this row; and how many sends of it
    # failed in a way nobody planned for (an adapter bug). Past a limit the row is dead, not retried forever.
    failing_since: datetime | None = None
    unexpected_errors: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # A message too long for the platform goes out as several posts: the ids of those already posted (JSON).
    page_ids: str | None = Field(default=None, sa_column=Column(Text))


class KeyValueRow(SQLModel, table=True):
    """Small durable state: sync tokens, caches of display names."""

    __tablename__ = "kv"
    key: str = Field(primary_key=True, max_length=255)
    value: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime


from . import vessel_tables  # noqa: E402,F401  (vessels, positions, notices of arrival: same metadata)
from . import watch_tables  # noqa: E402,F401  (who is on watch: same metadata)
from . import cop_tables  # noqa: E402,F401  (common operating picture tokens: same metadata)
from . import device_tables  # noqa: E402,F401  (the bot's own Matrix devices: same metadata)
