"""Engine, sessions and schema upgrades, the same on SQLite and PostgreSQL."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from . import locks

DEFAULT_DB_URL = "sqlite:///watchfloor.db"
MIGRATIONS = Path(__file__).parent / "migrations"
_UPGRADE_LOCK = locks.UPGRADE


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

    def upgrade(self) -> None:
        """Bring the schema to head with Alembic, then load the zone table from the shipped data."""
        from .repo import sync_zones

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _UPGRADE_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        with self.serialized_session() as s:
            sync_zones(s)

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


def _sqlite_write_transactions(engine: Engine) -> None:
    """Make every SQLite transaction `BEGIN IMMEDIATE`.

    pysqlite starts transactions lazily at the first write, so a read-then-write (next id, last audit hash) in
    two processes could interleave. Taking the write lock at BEGIN serialises them; WAL keeps readers going.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
