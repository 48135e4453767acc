"""A PostgreSQL advisory lock held by a connection of its own, outside any transaction, for as long as the
connection lives: if the process dies, the server ends its session and the lock is free for another replica.
The scheduler's leadership and the AIS feed each hold one (ids in storage/locks.py)."""
from __future__ import annotations

import logging

log = logging.getLogger("watchfloor.storage")


class SessionLock:
    def __init__(self, db, key: int, name: str):
        self.db, self.key, self.name = db, key, name
        self._conn = None
        self.held = False

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lock's session (what an operator would terminate)."""
        return self._conn.info.backend_pid if self._conn is not None else None

    def acquire(self) -> bool:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                url = self.db.engine.url.set(drivername="postgresql")
                self._conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True,
                                             connect_timeout=5, keepalives=1, keepalives_idle=10,
                                             keepalives_interval=5, keepalives_count=3, application_name=self.name)
            self.held = bool(self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0])
            return self.held
        except Exception as e:
            log.warning("%s lock: %s", self.name, str(e).splitlines()[0] if str(e) else type(e).__name__)
            self.release()
            return False

    def alive(self) -> bool:
        """The session still answers (a server that ended it has freed the lock); else the lock is let go."""
        try:
            self._conn.execute("SELECT 1").fetchone()
            return True
        except Exception:
            self.release()
            return False

    def release(self) -> None:
        conn, self._conn = self._conn, None
        held, self.held = self.held, False
        if conn is None:
            return
        if held:
            # Unlocked before the connection closes: the server frees a closed session's locks a moment later,
            # and a replica asking in that moment would wait a whole retry interval.
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except Exception:
                pass  # the session is gone already, and the lock with it
        try:
            conn.close()  # ending the session releases the lock
        except Exception:
            pass
