"""A PostgreSQL advisory lock held by a connection of its own, outside any transaction, for as long as the
connection lives: if the process dies, the server ends its session and the lock is free for another replica.
The scheduler's leadership, the AIS feed and the duties of bot/duties.py each hold one (ids in storage/locks.py).

A lock is a lease, not only a session. A holder that is killed closes its socket and the server frees the lock at
once; but a holder that is frozen (SIGSTOP, a stalled VM) or cut off from the network keeps its socket open, and
the server would keep its lock forever. So the lock's session says `idle_session_timeout`: the server ends it
(and frees the lock) after IDLE_TIMEOUT seconds without a query, helped by its TCP keep-alives on a dead peer.
The holder keeps it alive with a ping every PING_SECONDS from a thread of its own; a ping that fails gives the
lock up at once (`on_lost`). And `held` trusts a ping for LEASE_SECONDS only, less than the server's timeout:
a holder thawed after a freeze, whose session the server ended meanwhile, is no holder even before its next ping
tells it so.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("watchfloor.storage")

IDLE_TIMEOUT = 15.0   # seconds without a query before the server ends the lock's session
PING_SECONDS = 3.0    # the holder's keep-alive
LEASE_SECONDS = 11.0  # how long a successful ping vouches for the lock (< IDLE_TIMEOUT, with a margin)


def _options(idle_timeout: float) -> str:
    # Server side: idle sessions end; a peer that vanished is found by TCP keep-alives within ~11 s, and data
    # the peer never acknowledges fails the connection after 10 s.
    return (f"-c idle_session_timeout={int(idle_timeout * 1000)} -c tcp_keepalives_idle=5 "
            "-c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 -c tcp_user_timeout=10000")


class SessionLock:
    def __init__(self, db, key: int, name: str, *, on_lost: Callable[[], None] | None = None,
                 idle_timeout: float = IDLE_TIMEOUT, ping_seconds: float = PING_SECONDS,
                 lease_seconds: float = LEASE_SECONDS):
        self.db, self.key, self.name = db, key, name
        self.on_lost = on_lost
        self.idle_timeout, self.ping_seconds, self.lease_seconds = idle_timeout, ping_seconds, lease_seconds
        self._conn = None
        self._held = False
        self._vouched = 0.0  # monotonic time the last successful query (the lock taken, or a ping) was sent
        self._io = threading.Lock()  # one query at a time on the connection
        self._pinger: threading.Thread | None = None
        self._stop_ping = threading.Event()

    @property
    def held(self) -> bool:
        """Held, and a ping sent within the lease said so (the monotonic clock runs on while we are frozen)."""
        return self._held and time.monotonic() - self._vouched < self.lease_seconds

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lock's session (what an operator would terminate)."""
        conn = self._conn
        return conn.info.backend_pid if conn is not None else None

    def acquire(self) -> bool:
        """Try to take the lock (never waits for it); True when this process holds it now."""
        with self._io:
            for attempt in (1, 2):
                sent = time.monotonic()
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._connect()
                    got = bool(self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0])
                    break
                except Exception as e:
                    # A follower's idle session may have been ended by the server meanwhile: connect again once.
                    self._close()
                    if attempt == 2:
                        log.warning("%s lock: %s", self.name, _one_line(e))
                        return False
            if got:
                self._vouched = sent
                self._held = True
                self._start_pinger()
            return got

    def alive(self) -> bool:
        """Ping now: the session still answers (a server that ended it has freed the lock); else the lock is let
        go. While the keep-alive thread is in a ping, its answer (the lease) stands for this one."""
        if not self._held:
            return False
        if not self._io.acquire(timeout=1.0):
            return self.held
        try:
            ok = self._ping_locked()
        finally:
            self._io.release()
        if not ok:
            self._lose()
        return ok and self.held

    def release(self) -> None:
        self._stop_ping.set()
        with self._io:
            held, self._held = self._held, False
            conn = self._conn
            if conn is not None and held:
                # Unlocked before the connection closes: the server frees a closed session's locks a moment
                # later, and a replica asking in that moment would wait a whole retry interval.
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
                except Exception:
                    pass  # the session is gone already, and the lock with it
            self._close()  # ending the session releases the lock

    # ------------------------------------------------------------------ inside

    def _connect(self):
        import psycopg

        url = self.db.engine.url.set(drivername="postgresql")
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True, connect_timeout=5,
                               keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
                               tcp_user_timeout=10_000, application_name=self.name,
                               options=_options(self.idle_timeout))

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _ping_locked(self) -> bool:
        sent = time.monotonic()
        try:
            self._conn.execute("SELECT 1").fetchone()
        except Exception as e:
            log.warning("%s lock: keep-alive failed: %s", self.name, _one_line(e))
            return False
        self._vouched = sent
        return True

    def _start_pinger(self) -> None:
        if self._pinger is not None and self._pinger.is_alive():
            return
        self._stop_ping = threading.Event()
        self._pinger = threading.Thread(target=self._keep_alive, args=(self._stop_ping,),
                                        name=f"{self.name}-keepalive", daemon=True)
        self._pinger.start()

    def _keep_alive(self, stop: threading.Event) -> None:
        while not stop.wait(self.ping_seconds):
            with self._io:
                if stop.is_set() or not self._held:
                    return
                ok = self._ping_locked()
            if not ok:
                self._lose()
                return

    def _lose(self) -> None:
        """The session stopped answering: the lock is given up at once (another replica may hold it already)."""
        if not self._held:
            return
        self.release()
        if self.on_lost is not None:
            try:
                self.on_lost()
            except Exception:
                log.exception("%s lock: on_lost failed", self.name)


def _one_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
