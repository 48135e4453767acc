"""Operations that outlive their plan (issue 25): an operation still planned or active 30 minutes after its end is
overdue. The zone's joint rooms get one nudge (under its marking), `op list` and the handover digest show it as
overdue until it is done, cancelled or given a new end; the nudge goes out once across replicas and restarts."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from sqlmodel import col, select

from watchfloor.bot.scheduler import JobScheduler
from watchfloor.storage.tables import OutboxRow
from tests.helpers import ConsoleUser, make_parts

PUBLIC, CLEARED = "slack:CJOINT", "matrix:!joint:localhost"   # UNCLASS only; cleared for LES
WATCH = "slack:CWATCH"
SETTINGS = dict(
    zone=[{"code": "LALB", "joint_rooms": [PUBLIC, CLEARED], "watch_rooms": [WATCH]}],
    room=[{"id": CLEARED, "clearance": ["UNCLASS", "FOUO", "LES"]}],
    agency=[{"code": "CBP", "clearance": ["UNCLASS", "FOUO", "LES"]}, {"code": "USCG"}],
)
HERE = "at=33.74,-118.27"


def nudges(parts, room: str | None = None) -> list[dict]:
    with parts.db.session() as s:
        q = select(OutboxRow).where(OutboxRow.kind == "notice").order_by(OutboxRow.id)
        rows = [r for r in s.exec(q).all() if (room is None or r.room == room)]
    return [json.loads(r.payload) for r in rows if json.loads(r.payload).get("overdue")]


def texts(parts, room: str) -> list[str]:
    return [p["text"] for p in nudges(parts, room)]


def test_an_overdue_operation_is_nudged_once_under_its_marking_and_listed_until_closed(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)                  # clock: Tue 01 Dec 07:00 PST
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")              # the console room: cleared as the last user
    assert "OP-1 logged" in alice.say(f'!op log boarding vessel=IMO9074729 {HERE} start=+1h end=2h '
                                      f'contact="CBP desk 562-555-0100"')                 # 08:00-10:00 PST
    assert "OP-2 logged" in alice.say(f"!op log surveillance {HERE} start=+1h end=2h mark=LES")
    assert "OP-3 logged" in bob.say(f"!op log patrol {HERE} start=+1h end=3h")           # 08:00-11:00 PST
    sched = JobScheduler(parts, clock)
    clock.now = clock.now.replace(hour=18, minute=29)               # 10:29 PST: ended, not yet overdue
    assert sched.nudge_overdue() == 0
    assert "overdue" not in bob.say("!op list")
    clock.advance(minutes=1)                                        # 10:30 PST: 30 minutes past its end
    # OP-1 to both joint rooms and the console room, OP-2 (LES) to the cleared one and the console room.
    assert sched.nudge_overdue() == 3 + 2
    [public] = texts(parts, PUBLIC)
    assert public.splitlines()[0] == \
        "⏰ OP-1 CBP was to end at 10:00 PST — !op done OP-1, or !op update OP-1 end=11:00"
    assert "contact CBP desk 562-555-0100" in public and "IMO9074729" in public
    cleared = texts(parts, CLEARED)
    assert [t.split()[1] for t in cleared] == ["OP-1", "OP-2"] and "[LES]" in cleared[1]
    assert not [t for t in texts(parts, WATCH)]                     # joint rooms only
    # Once: the job runs every minute.
    for _ in range(3):
        clock.advance(minutes=1)
        assert sched.nudge_overdue() == 0
    assert len(nudges(parts)) == 5
    # Listed as overdue until closed or moved; the one that is not overdue is not.
    listing = alice.say("!op list")
    assert [line.split()[0] for line in listing.splitlines() if "overdue" in line] == ["OP-1", "OP-2"]
    assert "overdue" not in [line for line in listing.splitlines() if line.startswith("OP-3")][0]
    assert "OP-2 (LES, details withheld)" in bob.say("!op list").splitlines()  # USCG is not cleared for LES
    assert "⏰ overdue" in alice.say("!op show OP-1")
    assert "⏰ overdue" in alice.say('!op update OP-1 note="still alongside"')   # a note does not move its end
    assert "OP-1 done" in alice.say('!op done OP-1 outcome="clean"')
    assert "OP-1" not in alice.say("!op list")
    # A new end that also passes nudges again, once.
    assert "OP-2 updated" in alice.say("!op update OP-2 end=11:30")
    assert "overdue" not in alice.say("!op list")
    clock.now = clock.now.replace(hour=20, minute=0)                # 12:00 PST: OP-2 (11:30) and OP-3 (11:00)
    assert sched.nudge_overdue() == 2 + 3
    assert [t.split()[1] for t in texts(parts, CLEARED)] == ["OP-1", "OP-2", "OP-3", "OP-2"]   # by end
    assert "OP-2 CBP [LES] was to end at 11:30 PST" in texts(parts, CLEARED)[3]
    assert sched.nudge_overdue() == 0


def test_the_handover_digest_shows_overdue_operations(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say(f"!op log boarding {HERE} start=+1h end=1h")           # 08:00-09:00 PST
    clock.advance(hours=3)                                           # 10:00 PST
    digest = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor").say("!handover")
    overdue = digest.split("Overdue", 1)[1].split("Operations active now", 1)[0]
    assert "OP-1 CBP boarding" in overdue and "overdue" in overdue


def test_a_restart_does_not_nudge_again(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, **SETTINGS)
    ConsoleUser(parts, "LALB", "alice", "CBP").say(f"!op log boarding {HERE} start=+1h end=1h")
    clock.advance(hours=2, minutes=30)
    assert JobScheduler(parts, clock).nudge_overdue() == 3          # two joint rooms and the console room
    parts.db.dispose()
    again = make_parts(sqlite_url, clock, **SETTINGS)               # the process restarted on the same database
    clock.advance(minutes=5)
    assert JobScheduler(again, clock).nudge_overdue() == 0
    assert len(texts(again, PUBLIC)) == 1


def test_two_replicas_racing_nudge_once_per_room(pg_url, clock):
    replicas = [JobScheduler(make_parts(pg_url, clock, **SETTINGS), clock) for _ in range(2)]
    alice = ConsoleUser(replicas[0].parts, "LALB", "alice", "CBP")
    for n in range(5):
        alice.say(f"!op log boarding {HERE} start=+{n + 1}h end=1h")
    clock.advance(hours=8)

    with ThreadPoolExecutor(max_workers=8) as pool:
        posted = list(pool.map(lambda i: replicas[i % 2].nudge_overdue(), range(40)))
    assert sum(posted) == 5 * 3
    with replicas[1].parts.db.session() as s:
        keys = s.exec(select(OutboxRow.dedupe_key).where(col(OutboxRow.dedupe_key).like("overdue:%"))).all()
    assert len(keys) == len(set(keys)) == 5 * 3                   # two joint rooms and the console, once each
    assert sorted(t.split()[1] for t in texts(replicas[0].parts, PUBLIC)) == [f"OP-{n}" for n in range(1, 6)]
    for r in replicas:
        r.parts.db.dispose()


def test_the_scheduler_runs_the_nudge_only_while_leading(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, **SETTINGS)
    ConsoleUser(parts, "LALB", "alice", "CBP").say(f"!op log boarding {HERE} start=+1h end=1h")
    clock.advance(hours=3)
    sched = JobScheduler(parts, clock)
    sched._overdue_job()                                             # not started: not leading
    assert nudges(parts) == []
    sched._leading = True
    sched._overdue_job()
    assert len(texts(parts, PUBLIC)) == 1


def test_a_console_reader_not_cleared_sees_nothing_of_an_les_nudge(sqlite_url, clock):
    """The console room holds one rendering per clearance: a reader not cleared for the nudge's marking gets
    nothing printed, not even an empty line."""
    import io

    from watchfloor.bot.console import ConsoleRoom

    parts = make_parts(sqlite_url, clock, **SETTINGS)
    ConsoleUser(parts, "LALB", "alice", "CBP").say(f"!op log surveillance {HERE} start=+1h end=1h mark=LES")
    watching = {}
    for user, agency in (("bob", "USCG"), ("alice", "CBP")):
        room, sender = parts.directory.add_console("LALB", user, agency, None)
        watching[user] = (ConsoleRoom(parts.engine, room, sender, out=io.StringIO()))
    clock.advance(hours=3)
    assert JobScheduler(parts, clock).nudge_overdue() == 2              # the cleared joint room and the console
    for chat in watching.values():
        chat.poll()
    assert watching["bob"].out.getvalue() == ""
    assert watching["alice"].out.getvalue().startswith("⏰ OP-1 CBP [LES] was to end at 09:00 PST")
