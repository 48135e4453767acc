"""Small durable key/value state: sync tokens, name caches, chain heads."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from .tables import KeyValueRow


def kv_get(s: Session, key: str) -> str | None:
    row = s.get(KeyValueRow, key)
    return row.value if row else None


def kv_set(s: Session, key: str, value: str, at: datetime) -> None:
    row = s.get(KeyValueRow, key)
    if row is None:
        s.add(KeyValueRow(key=key, value=value, updated_at=at))
    else:
        row.value = value
        row.updated_at = at
        s.add(row)
