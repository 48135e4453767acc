"""On SQLite, one `watchfloor run` per database file.

Two processes on one SQLite file would both deliver the outbox and both run the scheduler; SQLite has no
advisory locks to share those duties (PostgreSQL does). A lock file beside the database, held with flock for the
life of the process, refuses the second one; the kernel releases it however the first one ends (SIGKILL too).
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from watchfloor.storage.db import default_url, normalize_url


class AlreadyRunning(Exception):
    def __init__(self, lock: Path, pid: str):
        super().__init__(f"db: another `watchfloor run` (pid {pid or '?'}) is using {lock.with_suffix('')}; "
                         "SQLite serves one running bot: stop it first, or share PostgreSQL between replicas")


def hold_sqlite_run_lock(url: str | None) -> IO[str] | None:
    """Hold the lock of a SQLite file database (None for other databases); keep the returned file open.
    No url is the default database, as `Database` reads it (a config without `[database]`)."""
    parsed = make_url(normalize_url(url or default_url()))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    db = Path(parsed.database).resolve()
    lock = db.with_name(db.name + ".lock")
    handle = open(lock, "a+", encoding="ascii")  # noqa: SIM115  (held open for the life of the process)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip()
        handle.close()
        raise AlreadyRunning(lock, pid) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
