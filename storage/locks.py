"""Every PostgreSQL advisory lock id the project takes, in one place so two uses can never share a number, and
the one order in which a transaction takes its locks.

Lock order. A transaction takes the locks it needs in this order, never one from higher up the list after one
from lower down (taking again a lock it already holds is fine: advisory locks are reentrant):

  1. `deconfliction_lock(zone)`: a zone's deconfliction lock, several zones in ascending code order. Taken
     first thing by every command in a zone's room (commands/engine.py; from a district room, by the command
     once it knows the conflict's zone), by a scan of the zone, by an import into it and by the escalation job,
     before reading anything they act on: so a conflict check sees every change of the zone committed before
     it, and two clashing operations logged at the same instant make exactly one conflict.
  2. `vessel_lock(zone, vessel)`: nominations of one vessel.
  3. Operation and target rows (SELECT ... FOR UPDATE, and the endorsement a nomination inserts).
  4. `AUDIT_CHAIN`: appending to the audit trail (the first record of a transaction takes it, until commit).
     Code that locks conflict rows before its first audit record takes it first (storage/audit.py hold_chain).
  5. Conflict rows (SELECT ... FOR UPDATE, and a new conflict waiting on the same cause's unique open key).

A supervisor acknowledging CF-1 (5 then 4) while an agency cancelled one of its operations (3, 4, 5) was a
deadlock. Should one slip through anyway, the transaction is run again (storage/db.py `Database.transaction`).
`UPGRADE` is taken alone, at start-up; the duties' locks (`SCHEDULER_LEADER`, `AIS_FEED_LEADER`, `MATRIX_DUTY`,
`SLACK_DELIVERY`, `EMAIL_DELIVERY`; bot/duties.py) are each held by a connection of its own, outside any
transaction.
"""
from __future__ import annotations

import zlib

from sqlalchemy import text
from sqlmodel import Session

UPGRADE = 727_001          # schema upgrades and start-up upserts: one process at a time
AUDIT_CHAIN = 727_003      # appending to the audit hash chain
SCHEDULER_LEADER = 727_010  # held for as long as a replica runs the scheduled jobs
AIS_FEED_LEADER = 727_011  # held for as long as a replica receives the AIS feed
MATRIX_DUTY = 727_012      # held for as long as a replica syncs with Matrix and delivers its outbox rows
SLACK_DELIVERY = 727_013   # held for as long as a replica delivers the Slack outbox rows
EMAIL_DELIVERY = 727_014   # held for as long as a replica sends the e-mail outbox rows


def vessel_lock(zone: str, vessel_key: str) -> int:
    """A lock per (zone, vessel): two nominations of one vessel at once make one target, not two."""
    return 1_000_000 + zlib.crc32(f"{zone}|{vessel_key}".encode()) % 1_000_000_000


def deconfliction_lock(zone: str) -> int:
    """A lock per zone: its operations, targets and conflicts change one transaction at a time."""
    return 2_000_000_000 + zlib.crc32(f"deconfliction|{zone}".encode())


def hold(s: Session, *keys: int) -> None:
    """Take these advisory locks until the transaction ends (PostgreSQL; SQLite's BEGIN IMMEDIATE already
    serialises writing transactions), in the order given."""
    if s.get_bind().dialect.name != "postgresql":
        return
    for key in keys:
        s.exec(text("SELECT pg_advisory_xact_lock(CAST(:k AS bigint))").bindparams(k=key))
