"""Engine, sessions and schema upgrades, the same on SQLite and PostgreSQL."""
from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

from . import locks

DEFAULT_DB_URL = "sqlite:///watchfloor.db"
MIGRATIONS = Path(__file__).parent / "migrations"
_UPGRADE_LOCK = locks.UPGRADE
# PostgreSQL aborts a transaction to break a deadlock (40P01) or when it could not be serialised (40001); run
# again from the start, it goes through.
RETRY_SQLSTATES = {"40P01": "deadlock", "40001": "serialization failure"}
ATTEMPTS = 5
log = logging.getLogger("watchfloor.storage")
T = TypeVar("T")


def default_url() -> str:
    return os.environ.get("WATCHFLOOR_DB_URL") or DEFAULT_DB_URL


def normalize_url(url: str) -> str:
    """Accept the plain `postgresql://` spelling and use psycopg 3, the driver we ship."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Database:
    def __init__(self, url: str | None = None, *, echo: bool = False):
        self.url = normalize_url(url or default_url())
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgres = parsed.get_backend_name() == "postgresql"
        if self.is_sqlite:
            self.engine = create_engine(self.url, echo=echo, connect_args={"timeout": 60, "check_same_thread": False})
            _sqlite_write_transactions(self.engine)
        else:
            self.engine = create_engine(self.url, echo=echo, pool_pre_ping=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any exception."""
        with Session(self.engine, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def transaction(self, work: Callable[[Session], T], attempts: int = ATTEMPTS) -> T:
        """Run `work` in one transaction and commit it; if the database aborted it to break a deadlock or a
        serialization failure, run it again from the start in a new one, a few times, after a short random
        pause so the two sides do not meet again.

        `work` must keep its effects inside the session (it may run more than once) and re-read what it acts on.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self.session() as s:
                    return work(s)
            except DBAPIError as e:
                what = RETRY_SQLSTATES.get(sqlstate(e))
                if what is None or attempt == attempts:
                    raise
                log.warning("transaction aborted by the database (%s); running it again (attempt %d of %d)",
                            what, attempt + 1, attempts)
                time.sleep(random.uniform(0.005, 0.05) * attempt)
        raise AssertionError("unreachable")

    def upgrade(self) -> None:
        """Bring the schema to head with Alembic, then load the zone table from the shipped data.

        Every CLI command calls this; a database already at head is recognised with one query, without loading
        Alembic (a quarter of a second), so commands start fast."""
        from .repo import sync_zones

        if self.revision() == head_revision():
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _UPGRADE_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        with self.serialized_session() as s:
            sync_zones(s)

    def revision(self) -> str | None:
        """The schema revision stored in the database (None for an empty database)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    @contextmanager
    def serialized_session(self) -> Iterator[Session]:
        """A transaction no other process runs at the same time: for start-up upserts (zones, agencies) that
        several processes starting together would otherwise race on. SQLite's BEGIN IMMEDIATE already does it."""
        with self.session() as s:
            if self.is_postgres:
                s.connection().execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _UPGRADE_LOCK})
            yield s

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def head_revision() -> str:
    """The newest migration's id. Revisions are numbered like their files (`0003_....py` has revision "0003"),
    so the head is found without Alembic; tests/test_packaging.py holds Alembic to the same answer."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def sqlstate(e: DBAPIError) -> str | None:
    """The SQLSTATE of a database error (psycopg), or None."""
    return getattr(e.orig, "sqlstate", None)


def _to_wal(cur) -> None:
    """Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at once, without
    its busy wait, while another process starting on the same new file holds it: tried again for a few seconds."""
    import sqlite3
    import time

    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 99:
                raise
            time.sleep(0.05)


def _sqlite_write_transactions(engine: Engine) -> None:
    """Make every SQLite transaction `BEGIN IMMEDIATE`.

    pysqlite starts transactions lazily at the first write, so a read-then-write (next id, last audit hash) in
    two processes could interleave. Taking the write lock at BEGIN serialises them; WAL keeps readers going.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=60000")
        _to_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
