"""Tokens of the common operating picture: one-time login links, page sessions and calendar feeds.

Kept apart from storage/tables.py; registered on the same metadata by the import at the end of that module.
Only a token's SHA-256 is stored: a copy of the database opens no page and no feed.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel


class CopTokenRow(SQLModel, table=True):
    __tablename__ = "cop_token"
    __table_args__ = (Index("ix_cop_token_user_kind", "user_id", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # link | session | calendar
    token_hash: str = Field(unique=True, max_length=64)
    user_id: str = Field(max_length=255)
    zone_code: str = Field(max_length=8)
    created_at: datetime
    expires_at: datetime | None = None  # a calendar feed lasts until revoked
    used_at: datetime | None = None
    revoked_at: datetime | None = None
