"""When briefings go out: local time in every zone across DST, missed briefings after downtime, exactly once per
room whatever races, and one leader among replicas on PostgreSQL."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time as clock_time, timedelta

import psycopg
import pytest
import time_machine
from sqlmodel import select

from watchfloor.bot.duties import SCHEDULER, Duties
from watchfloor.bot.scheduler import JobScheduler, briefing_trigger
from watchfloor.ioc.zones import get_zone
from watchfloor.storage.tables import OutboxRow
from tests.helpers import make_parts

ROOMS = {"joint_rooms": ["slack:CJOINT", "matrix:!joint:localhost"], "watch_rooms": ["slack:CWATCH"]}
LALB = {"zone": [{"code": "LALB", **ROOMS}]}


def firings(zone_code: str, start: datetime, days: int, at=clock_time(7, 0)) -> list[datetime]:
    trigger = briefing_trigger(get_zone(zone_code), at)
    out, fire = [], trigger.get_next_fire_time(None, start)
    while fire < start + timedelta(days=days):
        out.append(fire.astimezone(UTC))
        fire = trigger.get_next_fire_time(fire, fire)
    return out


@pytest.mark.parametrize("zone,start,utc_hours", [
    # LALB: clocks spring forward Sun 14 Mar 2027 and fall back Sun 7 Nov 2027; 07:00 local all the same.
    ("LALB", datetime(2027, 3, 12, tzinfo=UTC), [15, 15, 14, 14]),
    ("LALB", datetime(2027, 11, 5, tzinfo=UTC), [14, 14, 15, 15]),
    ("ANC", datetime(2027, 3, 12, tzinfo=UTC), [16, 16, 15, 15]),
    ("ANC", datetime(2027, 11, 5, tzinfo=UTC), [15, 15, 16, 16]),
    # No DST: the same UTC hour the whole year.
    ("HON", datetime(2027, 3, 12, tzinfo=UTC), [17, 17, 17, 17]),
    ("HON", datetime(2027, 11, 5, tzinfo=UTC), [17, 17, 17, 17]),
    ("GUAM", datetime(2027, 3, 12, tzinfo=UTC), [21, 21, 21, 21]),  # 07:00 ChST is 21:00Z the day before
    ("SJ", datetime(2027, 11, 5, tzinfo=UTC), [11, 11, 11, 11]),
])
@pytest.mark.calendar_free
def test_briefing_fires_at_local_briefing_time_across_dst(zone, start, utc_hours):
    fires = firings(zone, start, 4)
    assert [f.hour for f in fires] == utc_hours
    tz = get_zone(zone).tz
    assert all(f.astimezone(tz).strftime("%H:%M") == "07:00" for f in fires)
    assert len({f.astimezone(tz).date() for f in fires}) == 4  # one a local day, none skipped or doubled


def test_configured_briefing_time_is_used(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, zone=[{"code": "NY", "briefing_time": "06:30"}, {"code": "GUAM"}])
    triggers = JobScheduler(parts, clock).triggers()
    assert set(triggers) == {"NY", "GUAM"}
    first = triggers["NY"].get_next_fire_time(None, datetime(2027, 1, 4, tzinfo=UTC))
    assert first == datetime(2027, 1, 4, 11, 30, tzinfo=UTC)  # 06:30 EST


def _briefing_rows(parts) -> list[OutboxRow]:
    with parts.db.session() as s:
        return list(s.exec(select(OutboxRow).where(OutboxRow.kind == "briefing").order_by(OutboxRow.id)).all())


def test_clocks_fall_back_repeated_time_posts_once(sqlite_url, clock):
    """01:30 happens twice on 7 Nov 2027 in Los Angeles; the trigger fires twice, the rooms get one briefing."""
    parts = make_parts(sqlite_url, clock, zone=[{"code": "LALB", "briefing_time": "01:30", **ROOMS}])
    sched = JobScheduler(parts, clock)
    fires = [f for f in firings("LALB", datetime(2027, 11, 7, 7, tzinfo=UTC), 1, clock_time(1, 30))]
    assert fires == [datetime(2027, 11, 7, 8, 30, tzinfo=UTC), datetime(2027, 11, 7, 9, 30, tzinfo=UTC)]
    posted = []
    for fire in fires:
        clock.now = fire
        posted.append(sched.catch_up())
    assert posted == [{"LALB": 4}, {"LALB": 0}]
    assert len(_briefing_rows(parts)) == 4


def test_spring_forward_missing_time_still_briefs_that_day(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, zone=[{"code": "LALB", "briefing_time": "02:30", **ROOMS}])
    sched = JobScheduler(parts, clock)
    fires = firings("LALB", datetime(2027, 3, 13, 12, tzinfo=UTC), 3, clock_time(2, 30))
    days = [f.astimezone(get_zone("LALB").tz).date().isoformat() for f in fires]
    assert days == ["2027-03-14", "2027-03-15", "2027-03-16"]  # 14 Mar has no 02:30; it briefs at 03:30 PDT
    clock.now = fires[0]
    assert sched.catch_up() == {"LALB": 4}


def test_missed_briefing_posted_once_within_grace_skipped_beyond(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, **LALB)  # grace_hours defaults to 2
    sched = JobScheduler(parts, clock)
    # Down over 07:00 PST on 2 Dec, back at 08:45: still within grace, so it goes out, once.
    clock.now = datetime(2026, 12, 2, 16, 45, tzinfo=UTC)
    assert sched.catch_up() == {"LALB": 4}
    clock.advance(minutes=5)
    assert sched.catch_up() == {"LALB": 0}  # a second restart posts nothing more
    rows = _briefing_rows(parts)
    assert {json.loads(r.payload)["day"] for r in rows} == {"2026-12-02"}
    assert "Wednesday 02 December 2026 07:00 PST" in json.loads(rows[0].payload)["text"]  # as of 07:00
    # Down over 07:00 on 3 Dec, back at 09:01: past the 2 h grace, so that briefing is skipped.
    clock.now = datetime(2026, 12, 3, 17, 1, tzinfo=UTC)
    assert sched.catch_up() == {}
    assert len(_briefing_rows(parts)) == 4


def test_missed_briefings_coalesce_to_the_latest(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, **LALB, briefing={"grace_hours": 60})
    sched = JobScheduler(parts, clock)
    clock.now = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)  # down since before 07:00 on 2 Dec: three missed
    assert sched.catch_up() == {"LALB": 4}
    assert {json.loads(r.payload)["day"] for r in _briefing_rows(parts)} == {"2026-12-04"}


def signal_after(sched: JobScheduler, job: str) -> threading.Event:
    """An event set each time one of the scheduler's jobs has run (they run in the executor's threads), so a
    test waits for the job itself rather than for a guess of how long it takes."""
    done = threading.Event()
    run = getattr(sched, job)

    def wrapped(*args):
        try:
            return run(*args)
        finally:
            done.set()

    setattr(sched, job, wrapped)  # before start(): the scheduler keeps what it finds then
    return done


async def ran(event: threading.Event, what: str, timeout: float = 20.0) -> None:
    assert await asyncio.to_thread(event.wait, timeout), f"{what} did not run within {timeout:g} s"


def test_running_scheduler_posts_at_briefing_time(sqlite_url):
    """The real AsyncIOScheduler on a running loop: the clock reaches 07:00 PST and the briefing goes out."""
    async def scenario():
        parts = make_parts(sqlite_url, None, **LALB)
        # Time stands still unless moved: the first check cannot race the clock to 07:00 on a slow machine.
        with time_machine.travel(datetime(2026, 12, 2, 14, 59, 30, tzinfo=UTC), tick=False) as traveller:
            sched = JobScheduler(parts)
            caught_up = signal_after(sched, "_catch_up_job")
            briefed = signal_after(sched, "_briefing_job")
            sched.start()
            try:
                assert sched.is_leader  # SQLite: one process, it leads
                await ran(caught_up, "the catch-up on taking the lead")
                assert _briefing_rows(parts) == []  # it ran, at 06:59:30 PST: nothing was due yet
                traveller.move_to(datetime(2026, 12, 2, 15, 0, 1, tzinfo=UTC))
                sched._scheduler.wakeup()  # it sleeps until the next fire time by the loop's clock: look now
                await ran(briefed, "the 07:00 briefing job")
            finally:
                sched.shutdown()
            return parts

    parts = asyncio.run(scenario())
    rows = _briefing_rows(parts)
    assert sorted(r.room for r in rows) == ["console:LALB", "matrix:!joint:localhost", "slack:CJOINT",
                                            "slack:CWATCH"]


def test_restart_within_grace_catches_up_on_start(sqlite_url):
    async def scenario(at):
        with time_machine.travel(at, tick=False):
            parts = make_parts(sqlite_url, None, **LALB)
            sched = JobScheduler(parts)
            caught_up = signal_after(sched, "_catch_up_job")
            sched.start()
            try:
                await ran(caught_up, "the catch-up on start")
            finally:
                sched.shutdown()
            return len(_briefing_rows(parts))

    assert asyncio.run(scenario(datetime(2026, 12, 2, 16, 30, tzinfo=UTC))) == 4  # back at 08:30 PST
    assert asyncio.run(scenario(datetime(2026, 12, 2, 16, 40, tzinfo=UTC))) == 4  # restarted again: no repeat


# --- several replicas on PostgreSQL -----------------------------------------------------------------------

def test_two_replicas_racing_post_each_briefing_once_per_room(pg_url, clock):
    replicas = [JobScheduler(make_parts(pg_url, clock, **LALB), clock) for _ in range(2)]
    fire = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    clock.now = fire

    def fire_once(i: int) -> int:
        return replicas[i % 2].post_briefing("LALB", fire)

    with ThreadPoolExecutor(max_workers=16) as pool:
        posted = list(pool.map(fire_once, range(100)))
    rows = _briefing_rows(replicas[0].parts)
    assert sum(posted) == 4
    assert sorted(r.room for r in rows) == ["console:LALB", "matrix:!joint:localhost", "slack:CJOINT",
                                            "slack:CWATCH"]
    for r in replicas:
        r.parts.db.dispose()


def _kill_session(pg_url: str, duties: Duties) -> None:
    """What the server sees when a replica dies: its session ends (and its advisory lock with it)."""
    pid = duties.backend_pid(SCHEDULER)
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def attached(sched: JobScheduler, retry_seconds: float = 3.0) -> Duties:
    """The scheduler leading while its replica holds the `scheduler` duty, as `watchfloor run` attaches it."""
    duties = Duties(sched.parts.db, retry_seconds=retry_seconds)
    sched.attach(duties)
    return duties


async def test_one_leader_and_takeover_when_its_session_ends(pg_url, clock):
    a = JobScheduler(make_parts(pg_url, clock, **LALB), clock)
    b = JobScheduler(make_parts(pg_url, clock, **LALB), clock)
    da, db = attached(a), attached(b)
    await da.round()
    assert a.is_leader
    await db.round()
    await db.round()
    assert (a.is_leader, b.is_leader) == (True, False)
    _kill_session(pg_url, da)
    deadline = time.monotonic() + 10
    while a.is_leader:  # its keep-alive finds the session gone (within a ping) and it stops acting
        assert time.monotonic() < deadline, "the leader whose session ended still leads"
        await asyncio.sleep(0.1)
        await da.round()
    await db.round()
    assert b.is_leader
    await da.round()
    assert not a.is_leader
    await db.stop()  # a clean stop hands over at once
    await da.round()
    assert a.is_leader and not b.is_leader
    await da.stop()


def test_follower_takes_over_on_its_own_and_posts_the_missed_briefing(pg_url):
    """Two running replicas; the leader dies after 07:00 before posting; the other takes over and posts."""
    async def scenario():
        with time_machine.travel(datetime(2026, 12, 2, 15, 30, tzinfo=UTC), tick=True):
            a = JobScheduler(make_parts(pg_url, None, **LALB))
            b = JobScheduler(make_parts(pg_url, None, **LALB))
            da, db = attached(a, retry_seconds=0.5), attached(b, retry_seconds=0.5)
            # `a` leads but is "hung" (no jobs run) until it dies; `b` starts as the follower.
            a._after_taking_over = lambda: None
            caught_up = signal_after(b, "_catch_up_job")  # what b runs once it has taken the lead
            a.start()
            b.start()
            await da.start()
            await db.start()
            try:
                assert a.is_leader and not b.is_leader
                _kill_session(pg_url, da)
                a.shutdown()
                await da.stop()
                t0 = time.monotonic()
                await ran(caught_up, "the follower's catch-up")
                took = time.monotonic() - t0
                assert b.is_leader
            finally:
                b.shutdown()
                await db.stop()
            return took, _briefing_rows(b.parts)

    took, rows = asyncio.run(scenario())
    assert took < 5  # retry every 0.5 s here; every 3 s in service, well within 30 s
    assert len(rows) == 4


async def test_escalation_job_runs_only_on_the_leader(sqlite_url, clock):
    from tests.helpers import ConsoleUser

    parts = make_parts(sqlite_url, clock, **LALB,
                       district=[{"name": "Southwest", "watch_rooms": ["matrix:!d11:localhost"]}])
    ConsoleUser(parts, "LALB", "alice", "CBP").say("!op log patrol at=33.74,-118.27 start=+1h end=2h")
    ConsoleUser(parts, "LALB", "bob", "USCG").say("!op log patrol at=33.74,-118.27 start=+1h end=2h")
    sched = JobScheduler(parts, clock)
    clock.advance(minutes=16)  # nobody acknowledged CF-1 within 15 minutes

    def escalations():
        with parts.db.session() as s:
            return s.exec(select(OutboxRow).where(OutboxRow.kind == "escalation")).all()

    duties = attached(sched)
    sched._escalate_job()  # not leading yet: a follower never acts
    assert escalations() == []
    await duties.round()
    assert sched.is_leader
    sched._escalate_job()
    sched._escalate_job()
    assert [r.room for r in escalations()] == ["matrix:!d11:localhost"]


async def test_commands_and_jobs_run_while_a_replica_leads(pg_url, clock):
    """Leadership is a lock of its own: holding it never blocks a command, nor the leader's own jobs."""
    import threading

    from watchfloor.storage import locks
    from tests.helpers import ConsoleUser

    leader = JobScheduler(make_parts(pg_url, clock, **LALB), clock)
    duties = attached(leader)
    await duties.round()
    assert leader.is_leader
    assert len({locks.UPGRADE, locks.AUDIT_CHAIN, locks.SCHEDULER_LEADER}) == 3
    parts = make_parts(pg_url, clock, **LALB)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    replies = []
    worker = threading.Thread(target=lambda: replies.append(
        alice.say("!op log patrol at=33.74,-118.27 start=+1h end=2h")), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert replies and replies[0].startswith("OP-1 logged"), "the command waited on the leader's lock"
    leader._escalate_job()
    leader._scan_job()
    leader.shutdown()
    await duties.stop()
