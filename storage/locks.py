"""Every PostgreSQL advisory lock id the project takes, in one place so two uses can never share a number."""
from __future__ import annotations

import zlib

UPGRADE = 727_001          # schema upgrades and start-up upserts: one process at a time
AUDIT_CHAIN = 727_003      # appending to the audit hash chain
SCHEDULER_LEADER = 727_010  # held for as long as a replica runs the scheduled jobs


def vessel_lock(zone: str, vessel_key: str) -> int:
    """A lock per (zone, vessel): two nominations of one vessel at once make one target, not two."""
    return 1_000_000 + zlib.crc32(f"{zone}|{vessel_key}".encode()) % 1_000_000_000
