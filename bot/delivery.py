"""The delivery worker: sends what the outbox holds through each platform's adapter.

A row is marked sent with the platform's id only after the platform took it; a platform that is down or
rate limited gets the row again later (its `retry_after` honoured), and the rows behind it in that room wait,
so order per room is kept while other rooms go on.

What a failure means decides what happens next:
- refused for good (PermanentSendError): the row is dead at once;
- the platform refused our credentials (PlatformAuthError): the platform is marked down (`/healthz` says so,
  `watchfloor_platform_up` is 0, one log line a minute); its rows are left as they are, and one send a minute
  probes until the credentials work again, then sending resumes;
- not taken now (TransientSendError, a timeout) or an unplanned exception (an adapter bug): retried with
  backoff. While the platform's health check passes the fault is the row's, and the row is dead after
  `max_unexpected` unplanned errors or after failing for `dead_after`; during an outage rows wait, however long.
A dead row is counted (`watchfloor_outbox_dead_total`) and announced in the zone's watch rooms on the other
platforms. Order: a dead row no longer holds its room; the rows behind it go on (they are later messages, and
holding every later alert behind one that will never go is worse than a gap). An edit or removal of a dead
row finds no posted copy and is dropped with it; a reply to it is posted without the thread.

A message longer than the platform takes (`MessageLimits`) goes out as several posts in order (bot.paging);
the pages already posted are recorded, so a retry posts only the rest. A briefing's picture is one more page on
platforms where it is a call of its own (Slack's upload, Matrix's m.image): the text is recorded as posted before
the picture goes, and the picture is looked up like any page, so a crash between the two neither loses it nor
shows it twice.

Exactly once at the platform. Every post names its outbox row (Slack message metadata, a Matrix content key),
and an adapter with `find_sent` can say which rows are in a room already. A row may have been taken without
us recording it in two ways, and only then is the platform asked, never on the normal path:
- a send of this process failed ambiguously (a timeout, the connection dropped mid-request, a 5xx, an
  adapter bug — not a clear refusal): before that row is sent again it is looked for;
- another process sent it and died (or lost the room) before writing it as sent. Attempts cannot tell such a
  row from one never tried (the send succeeded, so nothing was counted), and a "sending" mark would cost a
  write before every send; instead the first time this worker delivers a room (after start, or after
  `recheck` when it takes the room over) it looks up the room's head rows, once — one call per room, and the
  rows a predecessor sent but did not record are always among the first pending ones (a room is sent in order).
A row found is written as sent with the id found and not posted again. A look-up the platform cannot answer
now holds the row like a failed send; one it will never answer (Slack without the history scope) is logged and
the row sent without looking, as with adapters that have no `find_sent` (at least once, as before).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlmodel import Session, select

from watchfloor.storage import outbox
from watchfloor.storage.tables import OutboxRow

from watchfloor.bot import metrics, paging
from watchfloor.bot.adapter import Adapter, MessageLimits, PermanentSendError, PlatformAuthError, TransientSendError

log = logging.getLogger("watchfloor.delivery")

# What each platform takes in one message, for adapters that do not say (`limits`). Slack: 50 blocks and
# text cut at 40,000 characters. Matrix: 65,536 bytes a whole event; the text and HTML are kept to 30,000 so the
# event's envelope, end-to-end encryption (a third more) and an edit (the content twice) still fit.
LIMITS = {
    "slack": MessageLimits(max_text=39_000, max_blocks=50),
    "matrix": MessageLimits(max_bytes=30_000),
}


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
    page_ids: list[str | None] = field(default_factory=list)  # pages of a long message already posted


@dataclass
class Stats:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    last_error: dict[str, str] = field(default_factory=dict)


class Delivery:
    def __init__(self, parts, adapters: Iterable[Adapter], *, poll_interval: float = 0.5,
                 backoff_base: float = 1.0, backoff_cap: float = 30.0, send_timeout: float = 30.0,
                 batch: int = 50, max_unexpected: int = 5, dead_after: timedelta = timedelta(hours=6),
                 auth_probe_interval: float = 60.0, health_ttl: float = 30.0):
        self.parts = parts
        self.adapters = {a.platform: a for a in adapters}
        self.poll_interval = poll_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.send_timeout = send_timeout
        self.batch = batch
        self.max_unexpected = max_unexpected
        self.dead_after = dead_after
        self.auth_probe_interval = auth_probe_interval  # also the pace of the "still refused" log line
        self.health_ttl = health_ttl
        self._refused: dict[str, str] = {}  # platform -> why its credentials were refused
        self._refused_logged: dict[str, float] = {}
        self._health: dict[str, tuple[float, bool]] = {}  # platform -> (when asked, answer)
        self._stop_event: asyncio.Event | None = None
        self._busy: set[str] = set()  # rooms being sent right now (by the worker or the fast path)
        self._done: OrderedDict[int, None] = OrderedDict()
        self._side: set[asyncio.Task] = set()
        self.stats = Stats()
        self._events: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._looked: set[str] = set()  # rooms whose head rows were looked up on the platform (bot.delivery doc)
        self._unsure: set[int] = set()  # rows whose last send failed ambiguously: looked for before sending
        self._found: dict[int, str] = {}  # rows found posted already, not yet settled
        # bot.duties.Duties: with several replicas, a platform's rows are sent only by the one holding its duty
        # (None: this process delivers every platform).
        self.duties = None

    @property
    def clock(self):
        return self.parts.engine.clock

    def refused(self, platform: str) -> str | None:
        """Why the platform refused our credentials, while it does (None when it takes them)."""
        return self._refused.get(platform)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        for platform, adapter in self.adapters.items():
            self._events[platform] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._run(adapter), name=f"delivery-{platform}"))

    def holds(self, platform: str) -> bool:
        """This replica delivers the platform's rows now (it holds the platform's duty)."""
        if self.duties is None:
            return True
        from watchfloor.bot.duties import delivery_duty

        return self.duties.held(delivery_duty(platform))

    def wake(self, platform: str | None = None) -> None:
        """New rows are in the outbox (of `platform`, or of any): look now instead of at the next poll. Safe from
        any thread."""
        if self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            for name, ev in self._events.items():
                if platform is None or name == platform:
                    ev.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.wake, platform)

    async def stop(self, timeout: float = 5.0) -> None:
        """Finish the sends in flight, then stop. What is still pending stays in the outbox for next time."""
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
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
            if not self.holds(adapter.platform):
                # Another replica delivers this platform; checked again at each poll (the duty may come to us).
                try:
                    await asyncio.wait_for(wakeup.wait(), self.poll_interval)
                except asyncio.TimeoutError:
                    pass
                continue
            if adapter.platform in self._refused:
                try:
                    await self._probe(adapter)
                except Exception:
                    log.exception("delivery: probing %s failed", adapter.platform)
                if adapter.platform in self._refused:
                    try:  # new rows do not wake a platform that refuses us: only the next probe or a stop
                        await asyncio.wait_for(self._stop_event.wait(), self.auth_probe_interval)
                    except asyncio.TimeoutError:
                        pass
                continue
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

    async def _probe(self, adapter: Adapter) -> int:
        """While a platform refuses our credentials: one send (the oldest due row), or its health check when
        nothing waits. Taken, it is up again and every room goes on."""
        batches = await self._claim(adapter)
        if not batches:
            if await self._answers(adapter, fresh=True):
                self._accepted(adapter.platform)
            else:
                self._refused_by(adapter.platform, self._refused.get(adapter.platform, "refused"))
            return 0
        first = min(batches, key=lambda room: batches[room][0].row_id)
        for room in batches:
            if room != first:
                self._busy.discard(room)
        return await self._deliver_room(adapter, batches[first][:1])

    async def run_once(self, adapter: Adapter) -> int:
        """Send what is due, room by room in order, rooms side by side; returns how many rows were attempted.
        While the platform refuses our credentials, one row is tried (the probe)."""
        if adapter.platform in self._refused:
            return await self._probe(adapter)
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
            return outbox.heads_of(s, rows)

    def deliver_now(self, rows: list[OutboxRow]) -> None:
        """Send a command's replies at once instead of at the next pass (they are the heads of their rooms)."""
        if self._stopping or self._loop is None:
            return
        by_room: dict[str, list[Job]] = {}
        for row in rows:
            adapter = self.adapters.get(row.room.split(":", 1)[0])
            if adapter is None or row.status != outbox.PENDING or adapter.platform in self._refused:
                continue
            if not self.holds(adapter.platform):
                continue  # the replica holding the duty sends it, woken by the commit's NOTIFY
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
                if not self.holds(adapter.platform):
                    break  # the duty went to another replica (we froze, or lost the database): it sends the rest
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

        async def flush() -> None:
            if marks is not None:
                await marks.flush()

        if job.skip:
            await flush()
            await asyncio.to_thread(self._mark_dead, job, job.skip, False)
            return True
        try:
            remote_id = self._found.pop(job.row_id, None) or await self._posted_already(adapter, job)
            if remote_id is None:
                remote_id = await self._send(adapter, job)
            elif await self._pages_found(adapter, job, remote_id):
                remote_id = await self._send(adapter, job)  # the pages not posted yet, in order
        except PlatformAuthError as e:
            # Not the row's fault: it stays as it is, and the platform is probed until it takes us again.
            self._refused_by(adapter.platform, str(e) or "credentials refused")
            return False
        except PermanentSendError as e:
            log.warning("delivery: %s row %s refused for good: %s", job.room, job.row_id, e)
            await flush()
            await asyncio.to_thread(self._mark_dead, job, str(e) or "refused", True)
            return True
        except TransientSendError as e:
            if e.ambiguous:
                self._unsure.add(job.row_id)
            await flush()
            return await self._failed(adapter, job, str(e) or "not taken", e.retry_after, unexpected=False)
        except asyncio.TimeoutError:
            self._unsure.add(job.row_id)  # the platform may have taken it and not answered
            await flush()
            return await self._failed(adapter, job, "the platform did not answer in time", None, unexpected=False)
        except Exception as e:  # an adapter bug must not lose the row nor stop the worker
            log.exception("delivery: sending row %s failed", job.row_id)
            self._unsure.add(job.row_id)  # it may have failed after the platform took the post
            await flush()
            return await self._failed(adapter, job, f"{type(e).__name__}: {e}", None, unexpected=True)
        self._accepted(adapter.platform)
        if marks is None:
            try:
                await asyncio.to_thread(self._mark_sent, job, remote_id)
            except Exception:
                if remote_id:
                    self._found[job.row_id] = remote_id  # posted: the next try records it, does not post it
                raise
        else:
            self._settled(job)
            marks.add(job, remote_id)
        return True

    def recheck(self, platform: str | None = None) -> None:
        """Look the head rows of the platform's rooms (every platform's, by default) up again before their next
        send: call it when this worker takes a platform's delivery over from another replica, which may have sent
        rows it did not live to record."""
        keep = (lambda room: not room.startswith(f"{platform}:")) if platform else (lambda room: False)
        self._looked = {room for room in self._looked if keep(room)}

    async def _posted_already(self, adapter: Adapter, job: Job) -> str | None:
        """The platform id of the row's post if the platform has it already; None when it has not, or when no
        look-up is due (the normal path: a row this worker has not sent before, in a room it has looked at)."""
        find = getattr(adapter, "find_sent", None)
        if find is None or job.kind == "redact":  # a removal done twice removes once
            return None
        first = job.room not in self._looked
        if not (first or job.row_id in self._unsure):
            return None
        jobs = await asyncio.to_thread(self._head_jobs, job.room) if first else []
        jobs = [job, *(j for j in jobs if j.row_id != job.row_id)]
        threads = {t for j in jobs for t in (j.reply_to_remote, j.payload.get("thread")) if isinstance(t, str)}
        try:
            found = await asyncio.wait_for(find(job.room, [j.row_id for j in jobs], threads=threads),
                                           self.send_timeout)
        except PermanentSendError as e:
            log.warning("delivery: cannot look for posts already in %s (%s); sending without looking", job.room, e)
            found = {}
        self._looked.add(job.room)
        self._unsure.discard(job.row_id)
        if found:
            log.warning("delivery: %s rows %s were posted already (the answer lost, or sent and not recorded); "
                        "recorded now, not posted again", job.room, sorted(found))
        self._found.update((row_id, remote) for row_id, remote in found.items() if row_id != job.row_id)
        return found.get(job.row_id)

    async def _pages_found(self, adapter: Adapter, job: Job, first_id: str) -> bool:
        """A row of several pages whose first page is posted: which of the rest are (the page whose send was
        unsure, or posted by a predecessor after the pages it recorded) go into `job.page_ids`; True when some
        page is still to be posted."""
        count = len(_pages(adapter, job))
        if count == 1:
            return False
        find_pages = getattr(adapter, "find_pages", None)
        posted = {1: first_id}
        if find_pages is not None and len(job.page_ids) < count:
            threads = [t for t in (job.reply_to_remote, job.payload.get("thread")) if isinstance(t, str)]
            try:
                posted |= await asyncio.wait_for(find_pages(job.room, job.row_id, threads=threads),
                                                 self.send_timeout)
            except Exception:
                self._found[job.row_id] = first_id  # known posted: the next try does not post it again
                raise
        ids = list(job.page_ids) or [first_id]
        while len(ids) < count and len(ids) + 1 in posted:
            ids.append(posted[len(ids) + 1])
        job.page_ids = ids
        await asyncio.to_thread(self._record_pages, job.row_id, ids)  # what a failure of the rest keeps
        return len(ids) < count

    def _head_jobs(self, room: str) -> list[Job]:
        """The room's first pending rows, as many as a batch: where rows sent but not recorded would be."""
        with self.parts.db.session() as s:
            rows = s.exec(select(OutboxRow).where(OutboxRow.room == room, OutboxRow.status == outbox.PENDING)
                          .order_by(OutboxRow.id).limit(self.batch)).all()
            return [self._job(s, row) for row in rows]

    async def _send(self, adapter: Adapter, job: Job) -> str | None:
        """Post the row, as several pages when it is longer than the platform takes; returns the platform id of
        its (first) post, the one replies thread under and edits change."""
        pages = _pages(adapter, job)
        if len(pages) == 1:
            return await asyncio.wait_for(
                adapter.send(job.room, job.kind, job.payload, target_id=job.target_id,
                             reply_to_remote=job.reply_to_remote), self.send_timeout)
        ids = list(job.page_ids)
        for i, page in enumerate(pages):
            if i < len(ids):
                continue  # posted before a failure: not again
            kind, target, reply_to = job.kind, job.target_id, job.reply_to_remote
            if i and job.kind == "edit":
                # An edit changes one message: the rest of the new text follows it as answers to it.
                kind, target, reply_to = "notice", None, job.target_id
            ids.append(await asyncio.wait_for(
                adapter.send(job.room, kind, page, target_id=target, reply_to_remote=reply_to), self.send_timeout))
            job.page_ids = ids
            if i < len(pages) - 1:
                await asyncio.to_thread(self._record_pages, job.row_id, ids)
        return ids[0]

    async def _failed(self, adapter: Adapter, job: Job, error: str, retry_after: float | None,
                      unexpected: bool) -> bool:
        """A send the platform did not take: retry later, or give the row up; True when it is now dead."""
        if retry_after is not None:
            fault = None  # the platform answered and said when: neither an outage nor the row's fault
            delay = timedelta(seconds=retry_after)
        else:
            fault = await self._answers(adapter)
            delay = outbox.backoff(job.attempts, self.backoff_base, self.backoff_cap)
        return await asyncio.to_thread(self._mark_failed, job, error, delay, fault, unexpected)

    async def _answers(self, adapter: Adapter, fresh: bool = False) -> bool:
        """The platform's health check, asked at most every `health_ttl` seconds (failures come in bursts)."""
        now = time.monotonic()
        cached = self._health.get(adapter.platform)
        if cached is not None and not fresh and now - cached[0] < self.health_ttl:
            return cached[1]
        try:
            ok = bool(await asyncio.wait_for(adapter.healthy(), min(self.send_timeout, 10.0)))
        except Exception:
            ok = False
        self._health[adapter.platform] = (time.monotonic(), ok)
        return ok

    # ------------------------------------------------------------------ a platform refusing our credentials

    def _refused_by(self, platform: str, reason: str) -> None:
        now = time.monotonic()
        first = platform not in self._refused
        self._refused[platform] = reason
        metrics.set_platform_up(platform, False)
        if first:
            log.error("delivery: %s refused the bot's credentials (%s); nothing is sent there until they work "
                      "again (tried every %gs)", platform, reason, self.auth_probe_interval)
            self._refused_logged[platform] = now
        elif now - self._refused_logged.get(platform, 0.0) >= self.auth_probe_interval:
            log.error("delivery: %s still refuses the bot's credentials (%s)", platform, reason)
            self._refused_logged[platform] = now

    def _accepted(self, platform: str) -> None:
        if self._refused.pop(platform, None) is not None:
            log.warning("delivery: %s takes the bot's credentials again; sending resumes", platform)
            metrics.set_platform_up(platform, True)
            self._health.pop(platform, None)
            ev = self._events.get(platform)
            if ev is not None:
                ev.set()

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
        if row.page_ids:
            job.page_ids = json.loads(row.page_ids)
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

    def _record_pages(self, row_id: int, ids: list[str | None]) -> None:
        with self.parts.db.session() as s:
            outbox.record_page(s, row_id, ids)

    def _mark_failed(self, job: Job, error: str, delay: timedelta, fault: bool | None, unexpected: bool) -> bool:
        with self.parts.db.session() as s:
            now = self.clock()
            if fault is None:
                outbox.mark_retry(s, job.row_id, error, now, delay)
                dead = False
            else:
                dead = outbox.mark_failed(s, job.row_id, error, now, delay, row_fault=fault, unexpected=unexpected,
                                          max_unexpected=self.max_unexpected, dead_after=self.dead_after)
            if dead:
                self._announce_dead(s, job, error, now)
        if dead:
            log.warning("delivery: %s row %s given up after %d tries: %s", job.room, job.row_id, job.attempts + 1,
                        error)
            self._died(job)
            return True
        self.stats.retried += 1
        self.stats.last_error[job.room] = error
        log.info("delivery: %s row %s not taken (%s); again in %.1fs", job.room, job.row_id, error,
                 delay.total_seconds())
        return False

    def _mark_dead(self, job: Job, error: str, announce: bool = True) -> None:
        """`announce`: a row the platform refused is counted and told; an edit of a copy never posted is just
        dropped (its original is what failed, and that was told already)."""
        with self.parts.db.session() as s:
            now = self.clock()
            outbox.mark_retry(s, job.row_id, error, now, timedelta(0), max_attempts=job.attempts + 1)
            if announce:
                self._announce_dead(s, job, error, now)
        if announce:
            self._died(job)
        else:
            self._settled(job)
            self.stats.dead += 1

    def _died(self, job: Job) -> None:
        self._settled(job)
        self.stats.dead += 1
        metrics.record_dead(job.room.split(":", 1)[0])
        self.wake()  # the notice of it waits for another platform's worker

    def _announce_dead(self, s: Session, job: Job, error: str, now) -> None:
        """Tell the watch rooms of the room's zone (or district) on the other platforms: where the loss happened
        nobody would see it. Once an hour per room at most, so a room the bot was removed from is no flood."""
        from watchfloor.commands.posting import post

        if job.payload.get("delivery_failure"):
            return  # a notice about a loss that was itself lost: no chain of notices
        directory = self.parts.directory
        room = directory.room(job.room)
        if room.zone is not None:
            candidates = directory.zone_rooms(room.zone.code, "watch")
        elif room.district:
            candidates = directory.district_rooms(room.district)
        else:
            candidates = []
        hour = now.strftime("%Y-%m-%dT%H")
        data = {"kind": job.kind, "room": job.room, "reason": error[:200], "attempts": job.attempts + 1}
        for target in candidates:
            if target.platform in (room.platform, "console"):
                continue
            key = hashlib.sha256(f"{job.room}|{target.id}".encode()).hexdigest()[:24]
            post(s, target, "notice", "delivery_failed.j2", lambda _c: data, now,
                 extra={"delivery_failure": True}, dedupe_key=f"undelivered:{key}:{hour}")

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
                # Not written: the rows stay pending and are offered again on a later pass, then written as
                # sent with the ids we got (not posted again); the room stops here.
                log.exception("delivery: recording %d sent rows failed", len(batch))
                self.failed = True
                for job, remote_id in batch:
                    self.delivery._done.pop(job.row_id, None)
                    if remote_id:
                        self.delivery._found[job.row_id] = remote_id

    async def flush(self) -> None:
        """Return once every row sent so far has been written as sent (or its write failed)."""
        while self.waiting or (self.writing is not None and not self.writing.done()):
            if self.writing is None or self.writing.done():
                self.writing = asyncio.ensure_future(self._write())
            await asyncio.wait([self.writing])


def _pages(adapter: Adapter, job: Job) -> list[dict[str, Any]]:
    """The posts the row is made of on this adapter's platform: its text cut to the platform's limits, and its
    picture as a page of its own where the adapter posts pictures apart (`picture_apart`, bot.paging)."""
    limits = getattr(adapter, "limits", None) or LIMITS.get(adapter.platform)
    return paging.pages(job.kind, job.payload, limits, picture_apart=bool(getattr(adapter, "picture_apart", False)))


def copy_in(s: Session, room: str, origin: list[str] | tuple[str, str]) -> str | None:
    """The platform id, in `room`, of a message or of its relayed copy (None if it was never posted there)."""
    origin_room, origin_event = origin
    if origin_room == room:
        return origin_event
    for row in outbox.copies_of(s, origin_room, origin_event):
        if row.room == room and row.status == outbox.SENT:
            return row.remote_id
    return None

