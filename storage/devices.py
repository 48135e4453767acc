"""The bot's own Matrix devices (its replicas): written by each replica at start, read by the others to know
whom to trust (bot/matrix/crypto.py)."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from .device_tables import BotDeviceRow


def register(s: Session, user_id: str, device_id: str, curve25519: str, ed25519: str, now: datetime) -> None:
    """This replica's device and its keys; a device whose store was replaced (new keys) is written anew."""
    row = s.get(BotDeviceRow, (user_id, device_id))
    if row is None:
        s.add(BotDeviceRow(user_id=user_id, device_id=device_id, curve25519=curve25519, ed25519=ed25519,
                           registered_at=now))
    elif (row.curve25519, row.ed25519) != (curve25519, ed25519):
        row.curve25519, row.ed25519, row.registered_at = curve25519, ed25519, now
        s.add(row)


def replicas(s: Session, user_id: str) -> dict[str, tuple[str, str]]:
    """The account's registered devices: device id -> (curve25519, ed25519)."""
    rows = s.exec(select(BotDeviceRow).where(BotDeviceRow.user_id == user_id)).all()
    return {r.device_id: (r.curve25519, r.ed25519) for r in rows}
