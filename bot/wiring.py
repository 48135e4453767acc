"""Building the parts from a configuration: database, directory, engine."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from watchfloor.commands.directory import Directory
from watchfloor.commands.engine import Clock, Engine, utcnow
from watchfloor.config import Settings, load_settings
from watchfloor.storage import repo
from watchfloor.storage.db import Database


@dataclass
class Parts:
    settings: Settings
    db: Database
    directory: Directory
    engine: Engine


def build(config: str | Path | None = None, db_url: str | None = None, clock: Clock = utcnow,
          settings: Settings | None = None, upgrade: bool = True, database: Database | None = None) -> Parts:
    settings = settings or load_settings(config)
    db = database or Database(db_url or settings.database.url)
    if upgrade:
        db.upgrade()
    directory = Directory(settings)
    sync_directory(db, directory)
    return Parts(settings, db, directory, Engine(db, directory, clock))


def sync_directory(db: Database, directory: Directory) -> None:
    """Mirror the configured agencies, members and rooms in the database (for audit and reports)."""
    with db.serialized_session() as s:
        for a in directory.settings.agency:
            repo.upsert_agency(s, a.code, a.name, [m.value for m in a.clearance])
        s.flush()
        for a in directory.settings.agency:
            members = {who: "member" for who in a.members} | {who: "supervisor" for who in a.supervisors}
            repo.replace_members(s, a.code, members)
        for room in directory.rooms():
            repo.upsert_room(s, room.id, zone=room.zone.code if room.zone else None, district=room.district,
                             kind=",".join(sorted(room.kinds)), clearance=[m.value for m in room.clearance])
