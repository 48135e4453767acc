"""Tables of the common operating picture: one-time login links, page sessions and calendar feeds, and the colour
each agency keeps in a zone.

Kept apart from storage/tables.py; registered on the same metadata by the import at the end of that module.
Only a token's SHA-256 is stored: a copy of the database opens no page and no feed.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class CopTokenRow(SQLModel, table=True):
    __tablename__ = "cop_token"
    __table_args__ = (Index("ix_cop_token_user_kind", "user_id", "kind"),
                      # every open live stream asks for the latest revocation (0010)
                      Index("ix_cop_token_revoked_at", "revoked_at"))
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # link | session | calendar
    token_hash: str = Field(unique=True, max_length=64)
    user_id: str = Field(max_length=255)
    zone_code: str = Field(max_length=8)
    created_at: datetime
    expires_at: datetime | None = None  # a calendar feed lasts until revoked
    used_at: datetime | None = None
    revoked_at: datetime | None = None
    # Who asked for the token, as the room that asked knew them (0010): a console's sender has the agency given
    # on its command line, which the server's configuration does not list.
    agency_code: str | None = Field(default=None, max_length=32)
    clearance: str | None = Field(default=None, max_length=64)  # markings, space-separated


class CopColourRow(SQLModel, table=True):
    """The colour an agency keeps in a zone's picture: a slot of the palette, given once, never reused."""

    __tablename__ = "cop_colour"
    __table_args__ = (UniqueConstraint("zone_code", "slot", name="uq_cop_colour_zone_slot"),)
    zone_code: str = Field(primary_key=True, max_length=8)
    agency_code: str = Field(primary_key=True, max_length=32)
    slot: int
