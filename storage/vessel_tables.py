"""Tables of vessels: AIS tracks (latest position and static data), position history, notices of arrival.

Kept apart from storage/tables.py; registered on the same metadata by the import at the end of that module.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel


class VesselRow(SQLModel, table=True):
    """One row per MMSI heard on AIS: always kept, whatever the history's retention."""

    __tablename__ = "vessel"
    mmsi: str = Field(primary_key=True, max_length=9)
    imo: str | None = Field(default=None, index=True, max_length=7)
    name: str | None = Field(default=None, index=True, max_length=40)
    call_sign: str | None = Field(default=None, max_length=16)
    ship_type: int | None = None
    destination: str | None = Field(default=None, max_length=40)
    ais_eta: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    sog: float | None = None
    cog: float | None = None
    heading: int | None = None
    position_at: datetime | None = None
    static_at: datetime | None = None
    in_approach: str = Field(default="", max_length=255)  # comma-separated zone codes
    updated_at: datetime = Field(index=True)  # the operating picture's live stream reads its latest (0007)


class VesselPositionRow(SQLModel, table=True):
    __tablename__ = "vessel_position"
    __table_args__ = (Index("ix_vessel_position_mmsi_at", "mmsi", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    mmsi: str = Field(max_length=9)
    at: datetime = Field(index=True)
    lat: float
    lon: float
    sog: float | None = None
    cog: float | None = None


class ArrivalNoticeRow(SQLModel, table=True):
    __tablename__ = "arrival_notice"
    __table_args__ = (Index("ix_arrival_notice_zone_eta", "zone_code", "eta"),)
    id: int | None = Field(default=None, primary_key=True)
    zone_code: str = Field(max_length=8)
    vessel_name: str = Field(max_length=120)
    imo: str | None = Field(default=None, index=True, max_length=7)
    mmsi: str | None = Field(default=None, index=True, max_length=9)
    call_sign: str | None = Field(default=None, max_length=16)
    flag: str | None = Field(default=None, max_length=60)
    eta: datetime
    last_port: str | None = Field(default=None, max_length=120)
    cdc: bool = False
    persons: int | None = None
    submitted: datetime | None = None
    imported_at: datetime
