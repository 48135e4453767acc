"""The duties several replicas share, each done by exactly one of them at a time (PostgreSQL).

Every replica serves Slack requests and runs the commands they carry. The duties are what must happen once:

- `scheduler`: the scheduled jobs (bot/scheduler.py runs them only while this replica holds it);
- `ais`: receiving the AIS feed (bot/ais/feed.py listens only while this replica holds it);
- `matrix`: Matrix sync and the delivery of Matrix outbox rows together. The replica holding it logs in (its own
  device and store_path), resumes from the sync token stored in the database, and sends; the others do not sync.
  Events are claimed by id, so a batch seen again after a takeover is not answered twice;
- `delivery:<platform>`: the delivery of one other platform's outbox rows (`delivery:slack`, `delivery:email`).

Each is a session advisory lock held as a lease (storage/session_lock.py, used by this module alone): a replica
killed, frozen or cut off loses it within the lease and another takes it at its next try (every RETRY_SECONDS),
well within 30 s. A part that holds a duty registers its hooks here (`add`): `on_take` when this replica takes
it, `on_lose` when it loses or gives it up. Each duty's lease is kept by a loop of its own, so a slow take-over
of one (a Matrix login) never delays noticing the loss of another.
On SQLite there is one process (bot/single_run.py) and it holds every duty.

Rows stored by a replica that does not deliver them wake the one that does: each commit that stored rows NOTIFYs
`watchfloor_outbox` (storage/outbox.py), and `OutboxWakeups` LISTENs; delivery polls as well, in case.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from watchfloor.storage import locks
from watchfloor.storage.outbox import OUTBOX_CHANNEL
from watchfloor.storage.session_lock import SessionLock

log = logging.getLogger("watchfloor.duties")

SCHEDULER, AIS, MATRIX = "scheduler", "ais", "matrix"
RETRY_SECONDS = 3.0

# Lock ids of the duties (storage/locks.py keeps every id apart).
LOCKS = {SCHEDULER: locks.SCHEDULER_LEADER, AIS: locks.AIS_FEED_LEADER, MATRIX: locks.MATRIX_DUTY,
         "delivery:slack": locks.SLACK_DELIVERY, "delivery:email": locks.EMAIL_DELIVERY}


def delivery_duty(platform: str) -> str:
    """The duty under which a platform's outbox rows are delivered (Matrix: with its sync)."""
    return MATRIX if platform == MATRIX else f"delivery:{platform}"


Callback = Callable[[], Awaitable[None]]


@dataclass
class _Duty:
    name: str
    lock: SessionLock | None
    on_take: Callback | None = None
    on_lose: Callback | None = None
    acting: bool = False  # on_take ran and on_lose has not yet
    check: asyncio.Event = field(default_factory=asyncio.Event)  # set: the next step now (keep-alive failed)


@dataclass
class Duties:
    """The duties of this replica: `add` them, `start()` in the event loop, `held(name)` from anywhere."""
    db: object
    retry_seconds: float = RETRY_SECONDS
    _duties: dict[str, _Duty] = field(default_factory=dict)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def shared(self) -> bool:
        return bool(getattr(self.db, "is_postgres", False))

    def add(self, name: str, on_take: Callback | None = None, on_lose: Callback | None = None) -> None:
        """A duty of this replica, with what to do on taking and on losing it; before `start()`."""
        duty = _Duty(name, None, on_take, on_lose)
        if self.shared:
            duty.lock = SessionLock(self.db, LOCKS[name], f"watchfloor-{name.replace(':', '-')}",
                                    on_lost=lambda: self._poke(duty))
        self._duties[name] = duty

    def held(self, name: str) -> bool:
        """This replica holds the duty now: on SQLite always (one process does everything), on PostgreSQL while
        its lease is good."""
        duty = self._duties.get(name)
        if duty is None:
            return not self.shared
        return duty.lock is None or duty.lock.held

    def backend_pid(self, name: str) -> int | None:
        """The server session holding the duty's lock (what an operator, or a test, would terminate)."""
        duty = self._duties.get(name)
        return duty.lock.backend_pid if duty is not None and duty.lock is not None else None

    def holding(self) -> dict[str, bool]:
        """Every duty this replica knows of, and whether it holds it now (what /healthz and /metrics show)."""
        out = {}
        for name in sorted(self._duties):
            try:
                out[name] = bool(self.held(name))
            except Exception:
                out[name] = False
        return out

    async def start(self) -> None:
        """The first round now (every free duty is taken), then each duty's lease kept by a loop of its own."""
        self._loop = asyncio.get_running_loop()
        await self._round()
        if self.shared:
            self._tasks = [asyncio.create_task(self._keep(duty), name=f"duty-{duty.name}")
                           for duty in self._duties.values()]

    async def stop(self) -> None:
        """Give every duty up (its on_lose runs), so another replica takes over at its next try."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for duty in self._duties.values():
            if duty.acting:
                await self._lose(duty, "stopping")
            if duty.lock is not None:
                await asyncio.to_thread(duty.lock.release)

    # ------------------------------------------------------------------ inside

    def _poke(self, duty: _Duty) -> None:
        """A lock's keep-alive failed (from its thread): act on it now, not at the next round."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(duty.check.set)

    async def _keep(self, duty: _Duty) -> None:
        while True:
            duty.check.clear()
            try:
                await asyncio.wait_for(duty.check.wait(), self.retry_seconds)
            except asyncio.TimeoutError:
                pass
            try:
                await self._step(duty)
            except Exception:
                log.exception("duty %s: a round failed", duty.name)

    async def round(self) -> None:
        """One round now: take what is free, give up what was lost (the loops do this every retry_seconds)."""
        await self._round()

    async def _round(self) -> None:
        duties = list(self._duties.values())
        for duty, failed in zip(duties, await asyncio.gather(*(self._step(d) for d in duties), return_exceptions=True)):
            if isinstance(failed, Exception):
                log.error("duty %s: a round failed: %s", duty.name, failed)

    async def _step(self, duty: _Duty) -> None:
        """Take the duty if it is free, give it up if its lease was lost."""
        if duty.lock is None:
            if not duty.acting:
                await self._take(duty)
        elif duty.acting and not duty.lock.held:
            await self._lose(duty, "its database session ended or stopped answering")
            await asyncio.to_thread(duty.lock.release)
        elif not duty.acting and await asyncio.to_thread(duty.lock.acquire):
            await self._take(duty)

    async def _take(self, duty: _Duty) -> None:
        duty.acting = True
        if duty.lock is not None:
            log.info("duty %s: this replica holds it now", duty.name)
        if duty.on_take is not None:
            try:
                await duty.on_take()
            except Exception:
                log.exception("duty %s: taking it over failed", duty.name)

    async def _lose(self, duty: _Duty, why: str) -> None:
        duty.acting = False
        if why != "stopping":
            log.warning("duty %s: given up (%s)", duty.name, why)
        if duty.on_lose is not None:
            try:
                await duty.on_lose()
            except Exception:
                log.exception("duty %s: giving it up failed", duty.name)


class OutboxWakeups:
    """LISTEN on `watchfloor_outbox` in a thread of its own; each notification (its payload the platform) calls
    `wake(platform)`. A lost connection is made again after a pause; delivery's polling covers the gap."""

    def __init__(self, db, wake: Callable[[str], None], *, reconnect_seconds: float = 2.0):
        self.db, self.wake, self.reconnect_seconds = db, wake, reconnect_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while LISTEN is in place (tests wait on it)

    def start(self) -> None:
        if not getattr(self.db, "is_postgres", False):
            return
        self._thread = threading.Thread(target=self._listen, name="outbox-wakeups", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)

    def _listen(self) -> None:
        import psycopg

        url = self.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=5,
                                     keepalives_interval=2, keepalives_count=3,
                                     application_name="watchfloor-wakeups") as conn:
                    conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.wake(note.payload)
                        conn.execute("SELECT 1")  # a dead connection shows here, not as endless silence
            except Exception as e:
                log.warning("outbox wake-ups: %s; polling meanwhile", str(e).splitlines()[0] if str(e) else e)
            self.listening.clear()
            self._stop.wait(self.reconnect_seconds)
