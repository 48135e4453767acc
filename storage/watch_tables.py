"""The watch: who of which agency is on watch in a zone, one row per shift.

Kept apart from storage/tables.py; registered on the same metadata by the import at the end of that module.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel


class WatchShiftRow(SQLModel, table=True):
    """A supervisor's shift: on from `started_at` until `until` (None: until they go off), `ended_at` once off.

    Kept after it ends, so the trail of who stood which watch stays readable and a handover can name who came off.
    """

    __tablename__ = "watch_shift"
    __table_args__ = (Index("ix_watch_shift_zone_open", "zone_code", "ended_at"),)
    id: int | None = Field(default=None, primary_key=True)
    zone_code: str = Field(max_length=8)
    person: str = Field(max_length=255)  # platform id: slack:U012ABC, matrix:@sam:localhost, console:sam
    name: str = Field(max_length=200)    # as the platform named them when they went on watch
    agency_code: str = Field(max_length=24)
    started_at: datetime
    until: datetime | None = None
    ended_at: datetime | None = None
