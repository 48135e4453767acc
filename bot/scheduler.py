"""Scheduled work: each configured zone's morning briefing, the periodic gap scan, escalation, the nudge about
operations past their end (commands/overdue.py), the watch_email fallback, and pruning what is kept only for a while
(`[retention] days`: sent messages, handled-message ids; never the audit trail).

APScheduler 3 with in-memory jobs only: its job stores must not be shared between processes, so every replica
schedules the same jobs and only the leader acts on them. The leader is the replica holding the `scheduler`
duty (bot/duties.py, a lease on PostgreSQL): when it dies, freezes or is cut off another replica takes over within
30 s. Without duties (SQLite, one process, or a scheduler on its own) it leads once started.

Leadership is a convenience, not the guarantee. Every briefing posting records the key (zone, local day, room),
and every overdue nudge its (operation, end, room), in the outbox's UNIQUE dedupe_key before anything is sent, so
two leaders for a moment, a restart, a repeated wall-clock time on the night clocks fall back, or a catch-up racing
the live firing still post once per room.
A briefing missed while no replica was leading is posted when one leads again, if still within the grace
period (`briefing.grace_hours`), and only the latest missed one (coalesced).
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from collections.abc import Callable
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as JobThreads
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlmodel import col, select

from watchfloor.commands.briefing import build_briefing
from watchfloor.commands.directory import Room
from watchfloor.commands.email_alerts import watch_email_fallback
from watchfloor.commands.handover import post_handover
from watchfloor.commands.jobs import escalate_due, scan_all
from watchfloor.commands.overdue import nudge_overdue
from watchfloor.commands.posting import CLEARANCE_LEVELS, clearance_key, post
from watchfloor.ioc.zones import Zone, get_zone
from watchfloor.storage import events, outbox
from watchfloor.storage.tables import OutboxRow

from watchfloor.bot import metrics
from watchfloor.bot.timeline import Picture, timeline
from watchfloor.commands.cop_feed import agency_colours

log = logging.getLogger("watchfloor.scheduler")

# A job may wake a hair before our clock says the minute has come; still count it as that minute's firing.
_EARLY = timedelta(seconds=1)
# A handover digest later than this is no longer the handover's: the new watch has read the room by then.
HANDOVER_GRACE = timedelta(hours=1)
# How often the leader looks for zones whose chat platforms are all down (their alerts then go to watch_email).
WATCH_EMAIL_EVERY = 30
# The jobs run in a thread of their own: not in the event loop's default executor, where the commands run
# (bot/runner.py `asyncio.to_thread`). When every zone's briefing fell due together, the briefings filled that
# executor and a command waited for a free thread behind them (issue 27); now they queue among themselves. One
# thread: a second made the 37 briefings 15% faster but doubled what they added to a command's p99 (GIL), and the
# pictures are drawn one at a time anyway (bot/drawing.py). `python bench/bench_briefing_commands.py`.
JOB_THREADS = 1


def briefing_trigger(zone: Zone, at) -> CronTrigger:
    """Fires at the zone's local briefing time; the zone's own tz keeps it right across DST (and without DST)."""
    return CronTrigger(hour=at.hour, minute=at.minute, timezone=zone.tz)


def due_firing(trigger: CronTrigger, now: datetime, grace: timedelta) -> datetime | None:
    """The latest scheduled time in (now - grace, now], the one briefing still worth posting; None if none.

    Several in the window (a long outage with a long grace, or 01:30 twice on the night clocks fall back)
    coalesce to the latest.
    """
    latest = None
    fire = trigger.get_next_fire_time(None, now - grace)
    while fire is not None and fire <= now + _EARLY:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire)
    return latest


def briefing_key(zone_code: str, day: date, room_id: str) -> str:
    return f"briefing:{zone_code}:{day.isoformat()}:{room_id}"


def briefing_rooms(directory, zone_code: str) -> list[Room]:
    """The zone's joint and watch rooms, each once, in a fixed order (so concurrent posters lock keys alike)."""
    rooms = {r.id: r for kind in ("joint", "watch") for r in directory.zone_rooms(zone_code, kind)}
    return [rooms[k] for k in sorted(rooms)]


def post_briefing(parts, zone_code: str, at: datetime, now: datetime | None = None,
                  draw: Callable[..., Picture | None] = timeline) -> int:
    """Post the zone's briefing for the day of `at` to every joint and watch room, and every agency address of the
    zone, not yet given it. `draw(data, colours)` draws its picture (`timeline`, or the same in the drawing
    process: bot/drawing.py).

    Returns the number of rooms it was posted to now (0 when every room already has that day's briefing).
    """
    zone = get_zone(zone_code)
    now = now or at
    day = at.astimezone(zone.tz).date()
    # The agencies' addresses too (`[[agency]] email`): each its own room, keyed like the others.
    rooms = briefing_rooms(parts.directory, zone.code) + parts.directory.email_rooms(zone.code)
    keys = {r.id: briefing_key(zone.code, day, r.id) for r in rooms}
    with parts.db.session() as s:
        done = set(s.exec(select(OutboxRow.dedupe_key).where(col(OutboxRow.dedupe_key).in_(list(keys.values())))))
        todo = [r for r in rooms if keys[r.id] not in done]
        if not todo:
            return 0
        briefing = _Briefing(s, parts.directory, zone, at, draw)
        posted = 0
        for room in todo:
            extra: dict[str, Any] = {"zone": zone.code, "day": day.isoformat()}
            if room.platform != "console":
                picture = briefing.picture(room.clearance)
                if picture is not None:
                    extra["image"] = picture.attachment()
            row = post(s, room, "briefing", "briefing.j2",
                       lambda c, r=room: briefing.data(c, r.show_withheld), now, extra=extra, dedupe_key=keys[room.id])
            if row is None:
                continue  # another replica (or firing) got there first
            if room.platform == "console":
                _attach_console_pictures(s, row, briefing)
            posted += 1
        return posted


def prune(parts, now: datetime) -> dict[str, int]:
    """Delete what is older than the retention: sent and dead outbox rows (with them the id map of messages that
    old: edits and replies of younger messages still map) and handled-message ids. The audit trail is kept."""
    before = now - timedelta(days=parts.settings.retention.days)
    with parts.db.session() as s:
        sent = outbox.prune(s, before)
    with parts.db.session() as s:
        handled = events.prune(s, before)
    return {"outbox": sent, "handled_events": handled}


class _Briefing:
    """One briefing's data and picture per clearance, each built once however many rooms share it."""

    def __init__(self, s, directory, zone: Zone, at: datetime, draw: Callable[..., Picture | None] = timeline):
        self.s, self.directory, self.zone, self.at, self.draw = s, directory, zone, at, draw
        self._data: dict[tuple[str, bool], dict] = {}
        self._pictures: dict[tuple, Picture | None] = {}

    def data(self, clearance, show_withheld: bool = True) -> dict:
        key = (clearance_key(clearance), show_withheld)
        if key not in self._data:
            self._data[key] = build_briefing(self.s, self.directory, self.zone, self.at, clearance,
                                             show_withheld=show_withheld)
        return self._data[key]

    def picture(self, clearance) -> Picture | None:
        data = self.data(clearance)
        # Keyed by what is drawn, so clearances that see the same operations share one drawing.
        seen = (tuple((a, op["ref"]) for a, ops in data["by_agency"].items() for op in ops),
                tuple(cf["ref"] for cf in data["conflicts"] if not cf["withheld"]))
        if seen not in self._pictures:
            # each agency in its colour of the zone, as on the operating picture's page
            colours = agency_colours(self.s, self.zone.code, data["by_agency"])
            self._pictures[seen] = self.draw(data, colours)
        return self._pictures[seen]


def _attach_console_pictures(s, row: OutboxRow, briefing: _Briefing) -> None:
    """Console rows carry one rendering per clearance; each gets the picture for that clearance."""
    payload = json.loads(row.payload)
    for level in CLEARANCE_LEVELS:
        picture = briefing.picture(level)
        variant = payload["by_clearance"][clearance_key(level)]
        if picture is not None:
            variant["image"] = picture.attachment()
    lowest = payload["by_clearance"][clearance_key(CLEARANCE_LEVELS[0])]
    if "image" in lowest:
        payload["image"] = lowest["image"]
    row.payload = json.dumps(payload, ensure_ascii=False)
    s.add(row)
    s.flush()


class JobScheduler:
    """The scheduled jobs of one replica. `start()` from inside a running asyncio event loop (AsyncIOScheduler
    needs one); `shutdown()` stops the jobs. With `attach(duties)` it leads while holding the `scheduler` duty."""

    def __init__(self, parts, clock=None, *, pictures_apart: bool = False):
        """`pictures_apart`: draw the briefings' pictures in a process of their own (bot/drawing.py), as
        `watchfloor run` does; else in the job's thread."""
        self.parts = parts
        self.clock = clock or parts.engine.clock
        self.pictures_apart = pictures_apart
        if pictures_apart:
            from watchfloor.bot import drawing

            self.draw: Callable[..., Picture | None] = drawing.draw
        else:
            self.draw = timeline
        self.grace = timedelta(hours=parts.settings.briefing.grace_hours)
        self._scheduler: AsyncIOScheduler | None = None
        self._leading = False
        self._duty_held: Callable[[], bool] | None = None  # None: not attached to the duties, leads once started

    # --- what tests and the runner use ------------------------------------------------------------------

    def attach(self, duties) -> None:
        """Lead while this replica holds the `scheduler` duty: its lease decides, bot/duties.py keeps it."""
        from watchfloor.bot.duties import SCHEDULER

        duties.add(SCHEDULER, on_take=self._took, on_lose=self._lost)
        self._duty_held = lambda: duties.held(SCHEDULER)

    @property
    def is_leader(self) -> bool:
        """Leading, and the duty's lease still good: a replica thawed after a freeze, whose session the server
        ended meanwhile, runs no job even before the duties' next round."""
        return self._leading and (self._duty_held is None or self._duty_held())

    def triggers(self) -> dict[str, CronTrigger]:
        d = self.parts.directory
        return {z.code: briefing_trigger(z, d.briefing_time(z.code)) for z in d.configured_zones()}

    def handover_triggers(self) -> dict[tuple[str, str], CronTrigger]:
        """Each zone's handover times (`[[zone]] handover_times`), zone local like the briefing."""
        return {(z.code, f"{t:%H:%M}"): briefing_trigger(get_zone(z.code), t)
                for z in self.parts.settings.zone for t in z.handover_times}

    def post_handover(self, zone_code: str, hhmm: str) -> int:
        """The handover digest due now (the latest firing within the hour) to the zone's watch rooms; once per
        room and handover time, whichever replica or firing gets there first (outbox dedupe key)."""
        now = self.clock()
        fire = due_firing(self.handover_triggers()[(zone_code, hhmm)], now, HANDOVER_GRACE)
        if fire is None:
            return 0
        return post_handover(self.parts.db, self.parts.directory, zone_code, fire, now=now)

    def post_briefing(self, zone_code: str, at: datetime) -> int:
        """Post the zone's briefing of `at`'s local day to its rooms; returns the rows enqueued (0 if done)."""
        return post_briefing(self.parts, zone_code, at, now=self.clock(), draw=self.draw)

    def nudge_overdue(self) -> int:
        """Nudge, once each, the operations overdue now in their zones' joint rooms; returns the rows posted."""
        return nudge_overdue(self.parts.db, self.parts.directory, self.clock(), self.parts.engine.rules.max_operation)

    def catch_up(self, now: datetime | None = None) -> dict[str, int]:
        """Post every configured zone's briefing that was due within the grace period and not yet posted."""
        now = now or self.clock()
        out = {}
        for code, trigger in self.triggers().items():
            fire = due_firing(trigger, now, self.grace)
            if fire is not None:
                out[code] = post_briefing(self.parts, code, fire, now=now, draw=self.draw)
        return out

    def start(self) -> None:
        grace_s = max(1, int(self.grace.total_seconds()))
        sched = AsyncIOScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1},
                                 executors={"default": JobThreads(JOB_THREADS)})
        for code, trigger in self.triggers().items():
            # Grace set on purpose: APScheduler's default of 1 s would drop a briefing the loop woke late for.
            sched.add_job(self._briefing_job, trigger, args=[code], id=f"briefing:{code}",
                          misfire_grace_time=grace_s, coalesce=True)
        for (code, hhmm), trigger in self.handover_triggers().items():
            sched.add_job(self._handover_job, trigger, args=[code, hhmm], id=f"handover:{code}:{hhmm}",
                          misfire_grace_time=int(HANDOVER_GRACE.total_seconds()), coalesce=True)
        conflicts = self.parts.settings.conflicts
        sched.add_job(self._scan_job, IntervalTrigger(minutes=conflicts.scan_every_minutes), id="gap-scan",
                      misfire_grace_time=60, coalesce=True)
        sched.add_job(self._escalate_job, IntervalTrigger(minutes=1), id="escalate", misfire_grace_time=30,
                      coalesce=True)
        sched.add_job(self._overdue_job, IntervalTrigger(minutes=1), id="overdue", misfire_grace_time=30,
                      coalesce=True)
        sched.add_job(self._retention_job, IntervalTrigger(hours=1), id="retention", misfire_grace_time=3600,
                      coalesce=True)
        if self.parts.settings.email is not None and any(z.watch_email for z in self.parts.settings.zone):
            sched.add_job(self._watch_email_job, IntervalTrigger(seconds=WATCH_EMAIL_EVERY), id="watch-email",
                          misfire_grace_time=WATCH_EMAIL_EVERY, coalesce=True)
        self._scheduler = sched
        sched.start()
        if self._duty_held is None:
            self._lead()

    def shutdown(self) -> None:
        sched, self._scheduler = self._scheduler, None
        if sched is not None and sched.running:
            try:
                sched.shutdown(wait=False)
            except RuntimeError:  # its event loop is already closed: nothing left to stop
                pass
        self._leading = False
        metrics.set_leader(False)
        if self.pictures_apart:
            from watchfloor.bot import drawing

            drawing.shutdown()

    # --- leadership -------------------------------------------------------------------------------------

    def _lead(self) -> None:
        self._leading = True
        metrics.set_leader(True)
        log.info("leading: this replica runs the scheduled jobs")
        self._after_taking_over()

    async def _took(self) -> None:
        self._lead()

    async def _lost(self) -> None:
        self._leading = False
        metrics.set_leader(False)

    def _after_taking_over(self) -> None:
        """Briefings missed while nobody led: posted now, off the event loop when the scheduler runs."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.add_job(self._catch_up_job, DateTrigger(run_date=datetime.now(UTC)),
                                    id="catch-up", replace_existing=True, misfire_grace_time=None)
        else:
            self._catch_up_job()

    # --- the jobs (run in the executor's threads) -------------------------------------------------------

    def _catch_up_job(self) -> None:
        if not self.is_leader:
            return
        try:
            posted = self.catch_up()
            if posted:
                log.info("briefings caught up: %s", posted)
        except Exception:
            log.exception("briefing catch-up failed")

    def _briefing_job(self, zone_code: str) -> None:
        if not self.is_leader:
            return
        try:
            fire = due_firing(self.triggers()[zone_code], self.clock(), self.grace)
            if fire is not None:
                self.post_briefing(zone_code, fire)
        except Exception:
            log.exception("briefing of %s failed", zone_code)

    def _handover_job(self, zone_code: str, hhmm: str) -> None:
        if not self.is_leader:
            return
        try:
            self.post_handover(zone_code, hhmm)
        except Exception:
            log.exception("handover digest of %s at %s failed", zone_code, hhmm)

    def _scan_job(self) -> None:
        if not self.is_leader:
            return
        try:
            scan_all(self.parts.engine)
        except Exception:
            log.exception("gap scan failed")

    def _escalate_job(self) -> None:
        if not self.is_leader:
            return
        try:
            escalate_due(self.parts.engine)
        except Exception:
            log.exception("escalation failed")

    def _overdue_job(self) -> None:
        if not self.is_leader:
            return
        try:
            posted = self.nudge_overdue()
            if posted:
                log.info("overdue operations nudged: %d messages", posted)
        except Exception:
            log.exception("overdue nudge failed")

    def watch_email(self) -> int:
        """The zone alerts stuck in watch rooms whose chat platforms are all down go to `watch_email`
        (commands/email_alerts.py); returns the e-mails stored."""
        engine = self.parts.engine
        now = self.clock()
        return self.parts.db.transaction(
            lambda s: watch_email_fallback(s, self.parts.directory, engine.deconfliction, now))

    def _watch_email_job(self) -> None:
        if not self.is_leader:
            return
        try:
            stored = self.watch_email()
            if stored:
                log.warning("every chat platform of a zone's watch rooms is down: %d alert e-mails to watch_email",
                            stored)
        except Exception:
            log.exception("the watch_email fallback failed")

    def _retention_job(self) -> None:
        if not self.is_leader:
            return
        try:
            pruned = prune(self.parts, self.clock())
            if any(pruned.values()):
                log.info("pruned past retention: %s", pruned)
        except Exception:
            log.exception("pruning failed")
