"""The delivery worker: sends what the outbox holds through each platform's adapter.

A row is marked sent with the platform's id only after the platform took it; a platform that is down or
rate limited gets the row again later (its `retry_after` honoured), and the rows behind it in that room wait,
so order per room is kept while other rooms go on. Rows the platform will never take are marked dead.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlmodel import Session, select

from watchfloor.storage import outbox
from watchfloor.storage.tables import OutboxRow

from .adapter import Adapter, PermanentSendError, TransientSendError

log = logging.getLogger("watchfloor.delivery")


@dataclass
class Job:
    row_id: int
    room: str
    kind: str
    attempts: int
    payload: dict[str, Any]
    target_id: str | None = None
    reply_to_remote: str | None = None
    skip: str | None = None  # why this row can never be sent (an edit of a copy that was never posted)
    refs: bool = False  # names another message through the id map (a reply, an edit, a redaction)


@dataclass
class Stats:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    last_error: dict[str, str] = field(default_factory=dict)


class Delivery:
    def __init__(self, parts, adapters: Iterable[Adapter], *, poll_interval: float = 0.5,
                 backoff_base: float = 1.0, backoff_cap: float = 30.0, send_timeout: float = 30.0,
                 batch: int = 50):
        self.parts = parts
        self.adapters = {a.platform: a for a in adapters}
        self.poll_interval = poll_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.send_timeout = send_timeout
        self.batch = batch
        self._busy: set[str] = set()  # rooms being sent right now (by the worker or the fast path)
        self._done: OrderedDict[int, None] = OrderedDict()
        self._side: set[asyncio.Task] = set()
        self.stats = Stats()
        self._events: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    @property
    def clock(self):
        return self.parts.engine.clock

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for platform, adapter in self.adapters.items():
            self._events[platform] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._run(adapter), name=f"delivery-{platform}"))

    def wake(self) -> None:
        """New rows are in the outbox: look now instead of at the next poll. Safe from any thread."""
        if self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            for ev in self._events.values():
                ev.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.wake)

    async def stop(self, timeout: float = 5.0) -> None:
        """Finish the sends in flight, then stop. What is still pending stays in the outbox for next time."""
        self._stopping = True
        for ev in self._events.values():
            ev.set()
        tasks = [*self._tasks, *self._side]
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1)
        self._tasks.clear()

    async def _run(self, adapter: Adapter) -> None:
        wakeup = self._events[adapter.platform]
        while not self._stopping:
            wakeup.clear()
            try:
                n = await self._dispatch(adapter)
            except Exception:
                log.exception("delivery: %s pass failed", adapter.platform)
                n = 0
            if n == 0 and not self._stopping:
                try:
                    await asyncio.wait_for(wakeup.wait(), self.poll_interval)
                except asyncio.TimeoutError:
                    pass

    async def _dispatch(self, adapter: Adapter) -> int:
        """The worker's pass: start each due room that is not being sent already, without waiting for it, so a
        long room does not hold back the others; a room that finishes its batch wakes the worker for its next.
        Returns how many rooms were started."""
        batches = await self._claim(adapter)
        wakeup = self._events[adapter.platform]
        for jobs in batches.values():
            task = asyncio.create_task(self._deliver_room(adapter, jobs))
            self._side.add(task)
            task.add_done_callback(self._side.discard)
            task.add_done_callback(lambda t, p=adapter.platform: self._room_done(t, p, wakeup))
        return len(batches)

    @staticmethod
    def _room_done(task: asyncio.Task, platform: str, wakeup: asyncio.Event) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("delivery: %s pass failed", platform, exc_info=task.exception())
        elif task.result():
            wakeup.set()  # the room may have more rows waiting behind the batch just sent

    async def _claim(self, adapter: Adapter) -> dict[str, list[Job]]:
        batches = await asyncio.to_thread(self._due_batches, adapter.platform, frozenset(self._busy))
        batches = {room: jobs for room, jobs in batches.items() if room not in self._busy and jobs}
        for room in batches:
            self._busy.add(room)
        return batches

    async def run_once(self, adapter: Adapter) -> int:
        """Send what is due, room by room in order, rooms side by side; returns how many rows were attempted."""
        batches = await self._claim(adapter)
        if not batches:
            return 0
        counts = await asyncio.gather(*(self._deliver_room(adapter, jobs) for jobs in batches.values()))
        return sum(counts)

    # ------------------------------------------------------------------ the fast path for fresh replies

    def heads(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """Of rows just stored, those with nothing older waiting in their room (sync: call from a DB thread)."""
        if not rows:
            return []
        with self.parts.db.session() as s:
            firsts = {room: outbox_head(s, room) for room in {r.room for r in rows}}
        by_room: dict[str, list[OutboxRow]] = {}
        for r in sorted(rows, key=lambda r: r.id):
            by_room.setdefault(r.room, []).append(r)
        return [r for room, rs in by_room.items() if rs[0].id == firsts[room] for r in rs]

    def deliver_now(self, rows: list[OutboxRow]) -> None:
        """Send a command's replies at once instead of at the next pass (they are the heads of their rooms)."""
        if self._stopping or self._loop is None:
            return
        by_room: dict[str, list[Job]] = {}
        for row in rows:
            adapter = self.adapters.get(row.room.split(":", 1)[0])
            if adapter is None or row.status != outbox.PENDING:
                continue
            job = self._job(None, row)
            if job is not None:
                by_room.setdefault(row.room, []).append(job)
        for room, jobs in by_room.items():
            if room in self._busy:
                continue  # the worker is on this room already and will get to them in order
            self._busy.add(room)
            adapter = self.adapters[room.split(":", 1)[0]]
            task = asyncio.create_task(self._deliver_room(adapter, jobs))
            self._side.add(task)
            task.add_done_callback(self._side.discard)

    # ------------------------------------------------------------------ one room, in order

    async def _deliver_room(self, adapter: Adapter, jobs: list[Job]) -> int:
        """Send a room's rows one after the other; stop at the first the platform did not take (order).

        Sends stay strictly sequential; only the bookkeeping is pipelined: a sent row is settled in memory at
        once and written as sent in the background, several rows per transaction, while the next row is sent.
        Every write is done before the room is released, before a row naming an earlier copy is rebuilt and
        before a failure is recorded, so what the database says is never behind for long nor out of order.
        """
        n = 0
        marks = _Marks(self)
        try:
            for job in jobs:
                if (self._stopping and n) or marks.failed:
                    break  # stopping: finish the send in flight, start no more (the rest stays pending)
                if job.row_id in self._done:
                    continue
                if job.refs and n:
                    await marks.flush()
                    job = await asyncio.to_thread(self._rebuild, job.row_id)  # earlier copies are now sent
                    if job is None:
                        continue
                n += 1
                if not await self._deliver(adapter, job, marks):
                    break
        finally:
            try:
                await asyncio.shield(marks.flush())
            finally:
                self._busy.discard(jobs[0].room)
        return n

    async def _deliver(self, adapter: Adapter, job: Job, marks: _Marks | None = None) -> bool:
        """Send one row; True when it is settled (sent, or dead) so the next of its room may go."""
        if job.skip:
            if marks is not None:
                await marks.flush()
            await asyncio.to_thread(self._mark_dead, job, job.skip)
            return True
        try:
            remote_id = await asyncio.wait_for(
                adapter.send(job.room, job.kind, job.payload, target_id=job.target_id,
                             reply_to_remote=job.reply_to_remote), self.send_timeout)
        except PermanentSendError as e:
            log.warning("delivery: %s row %s refused for good: %s", job.room, job.row_id, e)
            if marks is not None:
                await marks.flush()
            await asyncio.to_thread(self._mark_dead, job, str(e) or "refused")
            return True
        except TransientSendError as e:
            if marks is not None:
                await marks.flush()
            await asyncio.to_thread(self._mark_retry, job, str(e) or "not taken", e.retry_after)
            return False
        except asyncio.TimeoutError:
            if marks is not None:
                await marks.flush()
            await asyncio.to_thread(self._mark_retry, job, "the platform did not answer in time", None)
            return False
        except Exception as e:  # an adapter bug must not lose the row nor stop the worker
            log.exception("delivery: sending row %s failed", job.row_id)
            if marks is not None:
                await marks.flush()
            await asyncio.to_thread(self._mark_retry, job, f"{type(e).__name__}: {e}", None)
            return False
        if marks is None:
            await asyncio.to_thread(self._mark_sent, job, remote_id)
        else:
            self._settled(job)
            marks.add(job, remote_id)
        return True

    # ------------------------------------------------------------------ database (in a worker thread)

    def _due_batches(self, platform: str, busy: frozenset[str] = frozenset()) -> dict[str, list[Job]]:
        with self.parts.db.session() as s:
            batches: dict[str, list[Job]] = {}
            for head in outbox.due(s, f"{platform}:", self.clock(), busy):
                rows = [head] + list(s.exec(select(OutboxRow).where(
                    OutboxRow.room == head.room, OutboxRow.status == outbox.PENDING, OutboxRow.id > head.id,
                ).order_by(OutboxRow.id).limit(self.batch - 1)).all())
                batches[head.room] = [self._job(s, row) for row in rows]
            return batches

    def _rebuild(self, row_id: int) -> Job | None:
        with self.parts.db.session() as s:
            row = s.get(OutboxRow, row_id)
            return self._job(s, row) if row is not None and row.status == outbox.PENDING else None

    def _job(self, s: Session | None, row: OutboxRow) -> Job | None:
        p = outbox.payload(row)
        # The adapter may use these as an idempotency key (Matrix transaction ids).
        p["outbox_id"], p["outbox_created"] = row.id, row.created_at.isoformat()
        job = Job(row.id, row.room, row.kind, row.attempts, p)
        job.refs = bool(p.get("reply_origin") or p.get("target_origin"))
        if job.refs and s is None:
            return None  # needs the id map: left to the worker
        if row.kind == "reply":
            job.reply_to_remote = p.get("reply_to")
        if p.get("reply_origin"):
            job.reply_to_remote = copy_in(s, row.room, p["reply_origin"])
        if row.kind in ("edit", "redact"):
            job.target_id = p.get("target_id") or (copy_in(s, row.room, p["target_origin"])
                                                   if p.get("target_origin") else None)
            if not job.target_id:
                job.skip = "the message to change was never posted in this room"
        return job

    def _mark_sent(self, job: Job, remote_id: str | None) -> None:
        self._mark_sent_many([(job, remote_id)])

    def _mark_sent_many(self, sent: list[tuple[Job, str | None]]) -> None:
        with self.parts.db.session() as s:
            now = self.clock()
            for job, remote_id in sent:
                outbox.mark_sent(s, job.row_id, remote_id, now)
        for job, _ in sent:
            self._settled(job)
        self.stats.sent += len(sent)

    def _mark_retry(self, job: Job, error: str, retry_after: float | None) -> None:
        delay = (timedelta(seconds=retry_after) if retry_after is not None
                 else outbox.backoff(job.attempts, self.backoff_base, self.backoff_cap))
        with self.parts.db.session() as s:
            outbox.mark_retry(s, job.row_id, error, self.clock(), delay)
        self.stats.retried += 1
        self.stats.last_error[job.room] = error
        log.info("delivery: %s row %s not taken (%s); again in %.1fs", job.room, job.row_id, error,
                 delay.total_seconds())

    def _mark_dead(self, job: Job, error: str) -> None:
        with self.parts.db.session() as s:
            outbox.mark_retry(s, job.row_id, error, self.clock(), timedelta(0), max_attempts=job.attempts + 1)
        self._settled(job)
        self.stats.dead += 1

    def _settled(self, job: Job) -> None:
        """Remember rows settled here, so a batch read before they were settled does not send them again."""
        self._done[job.row_id] = None
        while len(self._done) > 50_000:
            self._done.popitem(last=False)


class _Marks:
    """Rows one room's sender has sent and not yet written as sent: written in the background, one transaction
    for whatever piled up while the previous write ran, so the next send need not wait for the database."""

    def __init__(self, delivery: Delivery):
        self.delivery = delivery
        self.waiting: list[tuple[Job, str | None]] = []
        self.writing: asyncio.Future | None = None
        self.failed = False

    def add(self, job: Job, remote_id: str | None) -> None:
        self.waiting.append((job, remote_id))
        if self.writing is None or self.writing.done():
            self.writing = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                await asyncio.to_thread(self.delivery._mark_sent_many, batch)
            except Exception:
                # Not written: the rows stay pending and are offered again on a later pass, with the same
                # transaction ids (the homeserver answers with the event it already has); the room stops here.
                log.exception("delivery: recording %d sent rows failed", len(batch))
                self.failed = True
                for job, _ in batch:
                    self.delivery._done.pop(job.row_id, None)

    async def flush(self) -> None:
        """Return once every row sent so far has been written as sent (or its write failed)."""
        while self.waiting or (self.writing is not None and not self.writing.done()):
            if self.writing is None or self.writing.done():
                self.writing = asyncio.ensure_future(self._write())
            await asyncio.wait([self.writing])


def copy_in(s: Session, room: str, origin: list[str] | tuple[str, str]) -> str | None:
    """The platform id, in `room`, of a message or of its relayed copy (None if it was never posted there)."""
    origin_room, origin_event = origin
    if origin_room == room:
        return origin_event
    for row in outbox.copies_of(s, origin_room, origin_event):
        if row.room == room and row.status == outbox.SENT:
            return row.remote_id
    return None


def outbox_head(s: Session, room: str) -> int | None:
    """The id of the oldest pending row of a room."""
    return s.exec(select(OutboxRow.id).where(OutboxRow.room == room, OutboxRow.status == outbox.PENDING)
                  .order_by(OutboxRow.id).limit(1)).first()
