"""The bot's own Matrix devices: one row per replica that logged in with access to this database.

Kept apart from storage/tables.py; registered on the same metadata by the import at the end of that module.
"""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class BotDeviceRow(SQLModel, table=True):
    """A device of the bot's account that a replica of this installation runs: its id and its keys as it wrote
    them at start. Only these are the bot's own (bot/matrix/crypto.py): a device that merely logged in with the
    bot's password is not here, and gets no room key."""

    __tablename__ = "bot_device"
    user_id: str = Field(primary_key=True, max_length=255)
    device_id: str = Field(primary_key=True, max_length=255)
    curve25519: str = Field(max_length=64)  # the identity key (Olm)
    ed25519: str = Field(max_length=64)     # the signing key
    registered_at: datetime
