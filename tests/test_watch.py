"""The watch (issue 17): who is on watch, alerts that call them by name, snoozes that hold escalation and wake,
and the handover digest fired by the scheduler at the zone's local handover times. SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import time_machine
from sqlmodel import col, select

from watchfloor.bot.scheduler import JobScheduler
from watchfloor.commands.jobs import escalate_due
from watchfloor.commands.message import ChatMessage
from watchfloor.storage.tables import AuditRow, ConflictRow, OutboxRow
from watchfloor.storage.watch_tables import WatchShiftRow
from tests.helpers import ConsoleUser, make_parts
from tests.test_scheduler import ran, signal_after
from tests.test_slack_adapter import (
    ALICE, BOB, LOG_OP, OVERLAP, SAM, WATCH, deliver, running, settle, slash, until,
)

SLACK_WATCH = "slack:C0WATCH"
MATRIX_WATCH = "matrix:!watch:localhost"
DISTRICT = "matrix:!d11:localhost"
SETTINGS = dict(
    zone=[{"code": "LALB", "watch_rooms": [SLACK_WATCH, MATRIX_WATCH], "handover_times": ["07:00", "19:00"]}],
    district=[{"name": "Southwest", "watch_rooms": [DISTRICT]}],
    agency=[{"code": "CBP", "supervisors": ["slack:U0SAM"]}, {"code": "HSI", "supervisors": ["matrix:@kim:localhost"]}],
    conflicts={"escalate_after_minutes": 15},
)
HERE, NEAR = "at=33.74,-118.27", "at=33.741,-118.271"
_ids = itertools.count(1)


def _say(parts, room: str, sender: str, name: str, text: str) -> str:
    handled = parts.engine.handle(ChatMessage(platform=sender.split(":")[0], room=room, sender=sender, text=text,
                                              event_id=f"w-{next(_ids)}", sender_name=name))
    return "\n".join(json.loads(r.payload)["text"] for r in handled.rows)


def _payloads(parts, room: str, kinds=("alert",)) -> list[dict]:
    with parts.db.session() as s:
        rows = s.exec(select(OutboxRow).where(OutboxRow.room == room, col(OutboxRow.kind).in_(kinds))
                      .order_by(OutboxRow.id)).all()
    return [json.loads(r.payload) for r in rows]


def _shifts(parts) -> list[WatchShiftRow]:
    with parts.db.session() as s:
        return list(s.exec(select(WatchShiftRow)).all())


def _clash(alice: ConsoleUser, bob: ConsoleUser) -> None:
    assert "OP-1 logged" in alice.say(f"!op log boarding {HERE} start=2026-12-01T14:00 end=2h")
    assert "CF-1" in bob.say(f"!op log patrol {NEAR} start=2026-12-01T15:00 end=2h")


# --- who is on watch -----------------------------------------------------------------------------------------

def test_watch_on_off_listing_and_a_watch_that_ends_by_itself(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)           # clock: Tue 1 Dec 07:00 PST
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    lee = ConsoleUser(parts, "LALB", "lee", "USCG", "supervisor")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    assert "Nobody is on watch" in bob.say("!watch")
    # Members may read but not go on watch; bad input is one line naming the field; neither stores anything.
    assert bob.say("!watch on") == "⚠ permission: only a watch supervisor may use 'watch on'"
    assert sam.say("!watch on until=banana").startswith("⚠ until: 'banana' is not a time")
    assert sam.say("!watch on until=06:00").startswith("⚠ until: Tue 01 Dec 06:00 PST has passed")
    assert sam.say("!watch on shift=night").startswith("⚠ shift: unknown key")
    assert _shifts(parts) == []
    # Without until=, a watch lasts until the zone's next handover time.
    assert "sam (CBP) is on watch in LALB until Tue 01 Dec 19:00 PST" in sam.say("!watch on")
    assert "until Tue 01 Dec 12:00 PST" in lee.say("!watch on until=12:00")
    listing = bob.say("!watch")
    assert "• CBP: sam until 19:00 PST" in listing and "• USCG: lee until 12:00 PST" in listing
    assert "sam (CBP) is off watch" in sam.say("!watch off")
    assert sam.say("!watch off") == "👁 You are not on watch in LALB; nothing changed."
    assert "CBP" not in bob.say("!watch")
    clock.advance(hours=5, minutes=1)                        # 12:01: lee's watch is over, nobody said so
    assert "Nobody is on watch" in bob.say("!watch")


# --- alerts call the watch by name ---------------------------------------------------------------------------

def test_alerts_and_escalations_mention_the_supervisors_on_watch_per_platform(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    carol = ConsoleUser(parts, "LALB", "carol", "HSI")
    assert "is on watch" in _say(parts, SLACK_WATCH, "slack:U0SAM", "Sam Ortiz", "!watch on")
    assert "is on watch" in _say(parts, MATRIX_WATCH, "matrix:@kim:localhost", "Kim Lee", "!watch on")
    assert "OP-1 logged" in alice.say(f"!op log boarding {HERE} start=2026-12-01T14:00 end=2h")
    assert "CF-1" in carol.say(f"!op log dive {NEAR} start=2026-12-01T15:00 end=1h")
    [slack] = _payloads(parts, SLACK_WATCH)
    mrkdwn = "\n".join(b["text"]["text"] for b in slack["blocks"] if b["type"] == "section")
    assert "<@U0SAM>" in mrkdwn                                  # a real Slack mention: the phone rings
    [matrix] = _payloads(parts, MATRIX_WATCH)
    assert '<a href="https://matrix.to/#/@kim:localhost">Kim Lee</a>' in matrix["html"]   # a Matrix pill
    assert "On watch: Sam Ortiz (CBP), Kim Lee (HSI)" in matrix["text"]
    assert "Nobody of" not in matrix["text"]
    # An escalation calls them too.
    clock.advance(minutes=16)
    assert [c.id for c in escalate_due(parts.engine)] == [1]
    [esc] = _payloads(parts, DISTRICT, ("escalation",))
    assert '<a href="https://matrix.to/#/@kim:localhost">Kim Lee</a>' in esc["html"]
    # Once posted, an escalation is kept current where it is: acknowledged, it is edited in place (m.replace).
    with parts.db.session() as s:
        row = s.exec(select(OutboxRow).where(OutboxRow.room == DISTRICT, OutboxRow.kind == "escalation")).one()
        row.status, row.remote_id = "sent", "$escalation"
        s.add(row)
    assert "acknowledged" in _say(parts, MATRIX_WATCH, "matrix:@kim:localhost", "Kim Lee", "!conflicts ack CF-1")
    [changed] = _payloads(parts, DISTRICT, ("edit",))
    assert changed["target_id"] == "$escalation" and "mentions" not in changed
    assert changed["text"].startswith("🚨 ESCALATED") and "owned by @kim:localhost" in changed["text"]


def test_an_alert_says_which_agency_has_nobody_on_watch(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    _say(parts, SLACK_WATCH, "slack:U0SAM", "Sam Ortiz", "!watch on")
    _clash(alice, bob)
    [alert] = _payloads(parts, MATRIX_WATCH)
    assert "⚠ Nobody of USCG is on watch in LALB" in alert["text"] and "Sam Ortiz (CBP)" in alert["text"]
    _say(parts, SLACK_WATCH, "slack:U0SAM", "Sam Ortiz", "!watch off")
    bob.say(f"!op log patrol {NEAR} start=2026-12-02T15:00 end=2h")
    assert "CF-2" in alice.say(f"!op log boarding {HERE} start=2026-12-02T15:30 end=1h")
    assert "⚠ Nobody of CBP, USCG is on watch in LALB" in _payloads(parts, MATRIX_WATCH)[-1]["text"]


# --- snooze -------------------------------------------------------------------------------------------------

def test_snooze_holds_escalation_shows_in_listings_and_wakes_by_itself(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    _clash(alice, bob)

    def snoozed():
        with parts.db.session() as s:
            return s.get(ConflictRow, 1).snoozed_until

    assert bob.say("!conflicts snooze CF-1 2h") == "⚠ permission: only a watch supervisor may use 'conflicts snooze'"
    assert sam.say("!conflicts snooze CF-1 forever") == \
        "⚠ duration: 'forever' is not a duration like 2h, 90m or 1h30m"
    assert sam.say("!conflicts snooze CF-1 2d").startswith("⚠ duration: at most 24h")
    assert sam.say("!conflicts snooze CF-1").startswith("⚠ duration: missing")
    assert snoozed() is None
    reply = sam.say('!conflicts snooze CF-1 2h reason="pilot delayed"')
    assert "CF-1 snoozed until 09:00 PST" in reply
    assert "snoozed until 09:00 PST" in bob.say("!conflicts")
    assert "snoozed until 09:00 PST" in _payloads(parts, MATRIX_WATCH, ("notice",))[-1]["text"]
    clock.advance(minutes=16)
    assert escalate_due(parts.engine) == []                     # would have escalated at 07:15
    clock.advance(minutes=100)                                  # 08:56
    assert escalate_due(parts.engine) == []
    assert _payloads(parts, DISTRICT, ("escalation",)) == []
    clock.advance(minutes=5)                                    # 09:01: it wakes, and escalates now
    assert [c.id for c in escalate_due(parts.engine)] == [1]
    woke, went_up = (p["text"] for p in _payloads(parts, MATRIX_WATCH, ("notice",))[-2:])
    assert "CF-1 snooze is over" in woke
    assert went_up.startswith("CF-1 escalated to the Southwest district at 09:01 PST")
    assert len(_payloads(parts, DISTRICT, ("escalation",))) == 1
    assert snoozed() is None and "snoozed" not in bob.say("!conflicts")
    assert escalate_due(parts.engine) == []


def test_an_acknowledged_conflict_is_not_snoozed_and_an_ack_ends_a_snooze(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, **SETTINGS)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    _clash(alice, bob)
    assert "snoozed until" in sam.say("!conflicts snooze CF-1 1h")
    sam.say("!conflicts ack CF-1")
    assert "snoozed" not in bob.say("!conflicts")
    assert sam.say("!conflicts snooze CF-1 1h").startswith("⚠ id: CF-1 is already acknowledged")


# --- the handover digest -------------------------------------------------------------------------------------

def _handovers(parts) -> list[OutboxRow]:
    with parts.db.session() as s:
        rows = s.exec(select(OutboxRow).where(OutboxRow.kind == "briefing").order_by(OutboxRow.id)).all()
    return [r for r in rows if json.loads(r.payload).get("handover")]


def test_handover_command_lists_what_the_next_watch_takes_over(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    sam.say("!watch on")
    _clash(alice, bob)
    bob.say("!op log patrol at=33.9,-118.6 start=2026-12-01T06:00 end=4h")        # active now
    bob.say("!op log escort at=33.9,-118.6 start=2026-12-02T06:00 end=1h")        # tomorrow: not listed
    alice.say('!target nominate IMO9074729 name="OCEAN PRIDE" eta=+5h priority=high reason="tip"')
    clock.advance(minutes=30)
    digest = bob.say("!handover")
    assert "Handover — Sector Los Angeles-Long Beach (LALB)" in digest
    on_watch, rest = digest.split("Not acknowledged", 1)
    assert "CBP: sam until 19:00 PST" in on_watch
    unacked, rest = rest.split("Acknowledged, still open", 1)
    # Its age on its own line, not a "Raised 30m ago:" heading repeated above each conflict (issue 25).
    assert "CF-1 overlap (same place, same time) · not acknowledged · raised 30m ago" in unacked
    assert "Raised" not in unacked
    acked, rest = rest.split("Operations active now", 1)
    assert "None." in acked
    active, rest = rest.split("Starting in the next 12 hours", 1)
    assert "OP-3 USCG patrol" in active
    starting, arrivals = rest.split("Arrivals in the next 12 hours", 1)
    assert "OP-1 CBP boarding" in starting and "OP-2 USCG patrol" in starting and "OP-4" not in starting
    assert "TGT-1 IMO9074729" in arrivals
    sam.say("!conflicts ack CF-1")
    digest = bob.say("!handover")
    assert "CF-1" in digest.split("Acknowledged, still open", 1)[1].split("Operations active now")[0]
    assert "owned by sam" in digest
    assert not ConsoleUser(parts, "LALB", "x").say("!handover").startswith("🔁")   # no agency: may not post


def test_handover_digest_fires_at_zone_local_times_across_dst_and_once(sqlite_url):
    """The real AsyncIOScheduler: 07:00 PDT the morning clocks spring forward (14 Mar 2027) is 14:00Z, not 15:00Z."""
    async def scenario():
        parts = make_parts(sqlite_url, None, **SETTINGS)
        with time_machine.travel(datetime(2027, 3, 14, 13, 59, 30, tzinfo=UTC), tick=False) as traveller:
            sched = JobScheduler(parts)
            fired = signal_after(sched, "_handover_job")
            sched.start()
            try:
                assert set(sched.handover_triggers()) == {("LALB", "07:00"), ("LALB", "19:00")}
                traveller.move_to(datetime(2027, 3, 14, 14, 0, 1, tzinfo=UTC))
                sched._scheduler.wakeup()
                await ran(fired, "the 07:00 handover job")
            finally:
                sched.shutdown()
            # Fired again (a second leader for a moment, a restart): nothing more is posted.
            with time_machine.travel(datetime(2027, 3, 14, 14, 5, tzinfo=UTC), tick=False):
                assert JobScheduler(parts).post_handover("LALB", "07:00") == 0
        return parts

    parts = asyncio.run(scenario())
    rows = _handovers(parts)
    assert sorted(r.room for r in rows) == ["console:LALB", MATRIX_WATCH, SLACK_WATCH]
    assert "Sunday 14 March 2027 07:00 PDT" in json.loads(rows[0].payload)["text"]


def test_two_leaders_racing_post_each_handover_once_per_room(pg_url, clock):
    replicas = [JobScheduler(make_parts(pg_url, clock, **SETTINGS), clock) for _ in range(2)]
    clock.now = datetime(2026, 12, 2, 3, 0, 20, tzinfo=UTC)      # 19:00 PST
    with ThreadPoolExecutor(max_workers=8) as pool:
        posted = list(pool.map(lambda i: replicas[i % 2].post_handover("LALB", "19:00"), range(24)))
    assert sum(posted) == 3
    assert sorted(r.room for r in _handovers(replicas[0].parts)) == ["console:LALB", MATRIX_WATCH, SLACK_WATCH]
    for r in replicas:
        r.parts.db.dispose()


# --- Slack: a real mention through the adapter ----------------------------------------------------------------

async def test_slack_alert_mentions_the_supervisor_on_watch(sqlite_url, clock, slack_api):
    async with running(sqlite_url, clock, slack_api) as (parts, adapter):
        await slash(adapter, slack_api, "on", command="/watch", user=SAM, channel=WATCH, trigger="s1", name="sam")
        await until(lambda: len(_shifts(parts)) == 1, what="sam on watch")
        await slash(adapter, slack_api, LOG_OP, user=ALICE, trigger="a1", name="alice")
        await until(lambda: len(_payloads(parts, "slack:C0JOINT", ("reply",))) >= 1, what="the first op")
        await slash(adapter, slack_api, OVERLAP, user=BOB, trigger="b1", name="bob")
        await until(lambda: _payloads(parts, f"slack:{WATCH}"), what="the alert")
        await settle(adapter)
        await deliver(parts, adapter)
        [alert] = [c for c in slack_api.calls_to("chat.postMessage") if c.params["channel"] == WATCH
                   and "ALERT" in c.params.get("text", "")]
        sections = "\n".join(b["text"]["text"] for b in alert.params["blocks"] if b["type"] == "section")
        assert f"On watch: <@{SAM}> (CBP)" in sections
        assert "Nobody of USCG is on watch in LALB" in sections


def test_escalation_comes_sooner_when_nobody_of_the_agencies_involved_is_on_watch(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)            # a zone that keeps a watch (handover_times)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    carol = ConsoleUser(parts, "LALB", "carol", "HSI")
    _say(parts, MATRIX_WATCH, "matrix:@kim:localhost", "Kim Lee", "!watch on")       # HSI on watch
    _clash(alice, bob)                                                                # CF-1: CBP and USCG
    assert "CF-2" in carol.say(f"!op log dive {HERE} start=2026-12-01T15:30 end=1h")  # CF-2, CF-3: HSI too
    clock.advance(minutes=4)
    assert escalate_due(parts.engine) == []
    clock.advance(minutes=2)                                 # 6 minutes: only the one nobody watches goes
    assert [c.id for c in escalate_due(parts.engine)] == [1]
    clock.advance(minutes=10)                                # 16 minutes: the others, as usual
    assert sorted(c.id for c in escalate_due(parts.engine)) == [2, 3]


# --- the console room as users run it ------------------------------------------------------------------------

def test_watch_in_console_processes_sharing_one_database(db_url):
    from tests.test_console_e2e import ALICE, BOB, SAM, console

    sam = console(db_url, SAM, "!watch on until=+3h", "!watch")
    assert "sam (CBP) is on watch in LALB until" in sam.stdout and "• CBP: sam until" in sam.stdout
    bob = console(db_url, BOB, "!watch", "!watch on", "!watch on until=banana", "/watch off")
    lines = bob.stdout.splitlines()
    assert "• CBP: sam until" in bob.stdout
    assert "⚠ permission: only a watch supervisor may use 'watch on'" in lines
    assert lines[-1] == "⚠ permission: only a watch supervisor may use 'watch off'"
    alice = console(db_url, ALICE, "!op log boarding at=33.74,-118.27 start=+1h end=2h")
    bob = console(db_url, BOB, "!op log patrol at=33.741,-118.271 start=+1h end=2h")
    assert "ALERT | On watch: sam (CBP)" in bob.stdout.splitlines()
    assert "ALERT | ⚠ Nobody of USCG is on watch in LALB" in bob.stdout.splitlines()
    assert alice.returncode == 0


async def test_slack_reaction_acknowledges_an_alert_once_and_only_for_supervisors(sqlite_url, clock, slack_api):
    from tests.fixtures.slack_api import apost_signed, event_body
    from tests.test_slack_adapter import SECRET, _raise_conflict

    async with running(sqlite_url, clock, slack_api) as (parts, adapter):
        await _raise_conflict(parts, adapter, slack_api)
        with parts.db.session() as s:
            ts = s.exec(select(OutboxRow.remote_id).where(OutboxRow.room == f"slack:{WATCH}",
                                                          OutboxRow.kind == "alert")).one()

        def status():
            with parts.db.session() as s:
                return s.get(ConflictRow, 1).status

        async def react(user, reaction, event_id, **headers):
            event = {"type": "reaction_added", "user": user, "reaction": reaction, "item_user": "UBOT",
                     "item": {"type": "message", "channel": WATCH, "ts": ts}, "event_ts": "1764600100.000100"}
            code, _ = await apost_signed(adapter.url, event_body(event, event_id=event_id), SECRET, **headers)
            assert code == 200
            await settle(adapter)
            await deliver(parts, adapter)

        from watchfloor.bot.metrics import REGISTRY

        def acks(channel):
            return REGISTRY.get_sample_value("watchfloor_acks_total", {"channel": channel}) or 0
        before = acks("reaction"), acks("button")
        await react(BOB, "white_check_mark", "EvR1")                 # a member may not acknowledge
        [quiet] = slack_api.calls_to("chat.postEphemeral")
        assert quiet.params["user"] == BOB and "supervisor" in quiet.params["text"]
        assert status() == "open" and not slack_api.calls_to("chat.update")

        await react(SAM, "eyes", "EvR0")                             # not an acknowledgement
        assert status() == "open"
        await react(SAM, "+1::skin-tone-3", "EvR2")                  # 👍 from the supervisor's phone
        assert status() == "acked"
        [update] = slack_api.calls_to("chat.update")
        assert update.params["channel"] == WATCH and update.params["ts"] == ts
        shown = " ".join(b["text"]["text"] for b in update.params["blocks"] if b["type"] == "section")
        assert "acknowledged" in shown and SAM in shown

        posted = len(slack_api.calls_to("chat.postMessage")) + len(slack_api.calls_to("chat.postEphemeral"))
        await react(SAM, "white_check_mark", "EvR3")                 # a second reaction
        await react(SAM, "+1::skin-tone-3", "EvR2", extra_headers={"X-Slack-Retry-Num": "1"})  # a retried event
        assert len(slack_api.calls_to("chat.update")) == 1
        assert len(slack_api.calls_to("chat.postMessage")) + len(slack_api.calls_to("chat.postEphemeral")) == posted
        with parts.db.session() as s:
            trail = s.exec(select(AuditRow).where(AuditRow.action == "conflict.ack")).all()
        assert len(trail) == 1
        assert (acks("reaction"), acks("button")) == (before[0] + 1, before[1])   # /metrics counts it once


def test_escalation_comes_sooner_in_any_zone_where_a_watch_is_kept_and_not_where_none_ever_is(db_url, clock):
    no_handovers = {**SETTINGS, "zone": [{"code": "LALB", "watch_rooms": [SLACK_WATCH, MATRIX_WATCH]}]}
    parts = make_parts(db_url, clock, **no_handovers)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    _clash(alice, bob)                                       # CF-1: CBP and USCG; nobody has ever stood a watch
    clock.advance(minutes=6)
    assert escalate_due(parts.engine) == []                  # the contract's 15 minutes
    _say(parts, MATRIX_WATCH, "matrix:@kim:localhost", "Kim Lee", "!watch on until=+1h")   # HSI keeps a watch
    assert [c.id for c in escalate_due(parts.engine)] == [1]  # nobody of CBP or USCG is on it: 5 minutes
    # Kim's watch ends by itself; the zone still keeps a watch for a day, and nobody of CBP is on it.
    clock.advance(hours=2)
    alice.say(f"!op log boarding {HERE} start=2026-12-02T14:00 end=2h")
    assert "CF-2" in bob.say(f"!op log patrol {NEAR} start=2026-12-02T15:00 end=2h")
    clock.advance(minutes=6)
    assert [c.id for c in escalate_due(parts.engine)] == [2]


# --- alerts kept current: escalation and closing by itself ----------------------------------------------------

def _posted(parts, room: str, remote: str) -> None:
    """As if delivered: the room's alert was posted as `remote` (edits and threads name it)."""
    with parts.db.session() as s:
        row = s.exec(select(OutboxRow).where(OutboxRow.room == room, OutboxRow.kind == "alert")
                     .order_by(OutboxRow.id)).first()
        row.status, row.remote_id = "sent", remote
        s.add(row)


def test_escalation_and_closing_by_itself_change_the_alert_in_place_and_say_so_once(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    _clash(alice, bob)
    _posted(parts, MATRIX_WATCH, "$alert")
    console = len(_payloads(parts, "console:LALB", ("alert", "notice")))
    clock.advance(minutes=16)
    assert [c.id for c in escalate_due(parts.engine)] == [1]
    [said] = _payloads(parts, MATRIX_WATCH, ("notice",))
    assert said["text"].startswith("CF-1 escalated to the Southwest district at 07:16 PST")
    assert said["thread_root"] == "$alert" and said["conflict_update"] == 1
    [edit] = _payloads(parts, MATRIX_WATCH, ("edit",))
    assert edit["target_id"] == "$alert" and "⬆ escalated to the Southwest district at 07:16 PST" in edit["text"]
    assert "not acknowledged" in edit["text"] and "mentions" not in edit
    # Cancelled: CF-1 closes by itself. The alert shows it closed, its thread says so once, no new alert there.
    alerts = len(_payloads(parts, MATRIX_WATCH))
    assert "cancelled" in alice.say("!op cancel OP-1")
    assert len(_payloads(parts, MATRIX_WATCH)) == alerts
    closed = _payloads(parts, MATRIX_WATCH, ("notice",))[-1]
    assert closed["text"].startswith("CF-1 closed by itself: OP-1 was cancelled")
    assert closed["thread_root"] == "$alert" and closed["conflict_state"] == "closed"
    latest = _payloads(parts, MATRIX_WATCH, ("edit",))[-1]
    assert latest["target_id"] == "$alert" and "closed: OP-1 was cancelled" in latest["text"]
    # The console room, which has no threads, shows each change as a line, as for an acknowledgement.
    lines = [p["text"] for p in _payloads(parts, "console:LALB", ("alert", "notice"))[console:]]
    assert lines[0].startswith("CF-1 escalated to the Southwest district")
    assert "✔ CF-1 overlap closed: OP-1 was cancelled" in lines[1] and len(lines) == 2
    with parts.db.session() as s:
        trail = [a.action for a in s.exec(select(AuditRow).where(AuditRow.entity == "CF-1")).all()]
    assert trail[-2:] == ["conflict.escalate", "conflict.close"]


# --- the watch announced ---------------------------------------------------------------------------------------

def test_going_on_and_off_watch_and_a_watch_ending_by_itself_are_said_once_in_the_watch_rooms(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    assert "is on watch" in _say(parts, MATRIX_WATCH, "matrix:@kim:localhost", "Kim Lee", "!watch on until=09:00")
    [slack] = _payloads(parts, SLACK_WATCH, ("notice",))
    assert slack["text"] == "👁 [HSI] Kim Lee is on watch in LALB until 09:00 PST"
    assert _payloads(parts, MATRIX_WATCH, ("notice",)) == []      # where she said it, her answer says it
    [console] = _payloads(parts, "console:LALB", ("notice",))
    assert console["text"] == slack["text"]
    _say(parts, MATRIX_WATCH, "matrix:@kim:localhost", "Kim Lee", "!watch on until=10:00")   # the same watch
    assert len(_payloads(parts, SLACK_WATCH, ("notice",))) == 1
    sam.say("!watch on")
    sam.say("!watch off")
    assert [p["text"] for p in _payloads(parts, SLACK_WATCH, ("notice",))[1:]] == [
        "👁 [CBP] sam is on watch in LALB until 19:00 PST", "👁 [CBP] sam is off watch in LALB"]
    mine = _payloads(parts, "console:LALB", ("notice",))[1:]
    assert all(p["said_to"] == "console:sam" for p in mine)   # sam's console shows his answer, not these again
    clock.advance(hours=3, minutes=1)                          # 10:01: Kim's watch is over; nobody said so
    escalate_due(parts.engine)
    escalate_due(parts.engine)                                 # the next minute: nothing more
    ended = "👁 [HSI] Kim Lee's watch in LALB ended at 10:00 PST"
    for room in (MATRIX_WATCH, SLACK_WATCH, "console:LALB"):
        texts = [p["text"] for p in _payloads(parts, room, ("notice",))]
        assert texts[-1] == ended and texts.count(ended) == 1, room
    with parts.db.session() as s:
        trail = [a.action for a in s.exec(select(AuditRow).where(col(AuditRow.action).like("watch.%"))
                                          .order_by(AuditRow.id)).all()]
    assert trail == ["watch.on", "watch.on", "watch.on", "watch.off", "watch.lapse"]


async def test_slack_alert_is_changed_in_place_by_snooze_escalation_a_command_in_its_channel_and_closing(
        sqlite_url, clock, slack_api):
    from tests.fixtures.slack_api import apost_signed, event_body
    from tests.test_slack_adapter import SECRET, _raise_conflict, message_event, slack_settings

    settings = slack_settings(slack_api.base_url)
    settings["district"] = [{"name": "Southwest", "watch_rooms": ["slack:C0D11"]}]
    async with running(sqlite_url, clock, slack_api, settings=settings) as (parts, adapter):
        await _raise_conflict(parts, adapter, slack_api)
        with parts.db.session() as s:
            ts = s.exec(select(OutboxRow.remote_id).where(OutboxRow.room == f"slack:{WATCH}",
                                                          OutboxRow.kind == "alert")).one()

        def updates():
            return [c for c in slack_api.calls_to("chat.update") if c.params["ts"] == ts]

        def shown(call):
            return "\n".join(b["text"]["text"] for b in call.params["blocks"] if b["type"] == "section")

        def buttons(call):
            return [e["action_id"] for b in call.params["blocks"] if b["type"] == "actions" for e in b["elements"]]

        def in_thread():
            return [c.params["text"] for c in slack_api.calls_to("chat.postMessage")
                    if c.params["channel"] == WATCH and c.params.get("thread_ts") == ts]

        async def done():
            await settle(adapter)
            await deliver(parts, adapter)

        # A command typed in the watch channel itself changes that channel's alert.
        event = message_event("!conflicts snooze CF-1 1h", user=SAM, channel=WATCH, ts="1764600200.000100")
        assert (await apost_signed(adapter.url, event_body(event, event_id="EvS1"), SECRET))[0] == 200
        await done()
        [snoozed] = updates()
        assert "snoozed until 08:00 PST" in shown(snoozed) and "ack:CF-1" in buttons(snoozed)

        clock.advance(minutes=61)                     # it wakes and, still unacknowledged, goes to the district
        assert [c.id for c in escalate_due(parts.engine)] == [1]
        await deliver(parts, adapter)
        assert "escalated to the Southwest district at 08:01 PST" in shown(updates()[-1])
        assert "ack:CF-1" in buttons(updates()[-1])   # still to be acknowledged, here or in the district
        said = in_thread()
        assert len(said) == 2 and "snooze is over" in said[0] and "escalated to the Southwest district" in said[1]

        # A slash command in the watch channel, too.
        await slash(adapter, slack_api, "ack CF-1", command="/conflicts", user=SAM, channel=WATCH, trigger="s9",
                    name="sam")
        await done()
        owned = updates()[-1]
        assert "owned by" in shown(owned) and SAM in shown(owned) and "ack:CF-1" not in buttons(owned)
        assert "resolve:joint:CF-1" in buttons(owned)
        # The district's escalation, which no notice reaches, is changed in place as well.
        with parts.db.session() as s:
            up = s.exec(select(OutboxRow.remote_id).where(OutboxRow.room == "slack:C0D11",
                                                          OutboxRow.kind == "escalation")).one()
        district = [c for c in slack_api.calls_to("chat.update") if c.params["ts"] == up]
        assert district and "owned by" in shown(district[-1]) and SAM in shown(district[-1])

        # Closing by itself: the alert shows it closed, without buttons, and its thread says so once.
        before = len(updates())
        await slash(adapter, slack_api, "cancel OP-2", command="/op", user=BOB, trigger="b9", name="bob")
        await done()
        assert len(updates()) == before + 1
        closed = updates()[-1]
        assert "closed: OP-2 was cancelled" in shown(closed) and buttons(closed) == []
        assert in_thread()[-1].startswith("CF-1 closed by itself: OP-2 was cancelled") and len(in_thread()) == 3
        assert not [c for c in slack_api.calls_to("chat.postMessage") if c.params["channel"] == WATCH
                    and not c.params.get("thread_ts") and "closed" in c.params.get("text", "")]


def test_a_console_user_going_on_watch_sees_it_once_and_the_others_see_it(db_url, clock):
    import io

    from watchfloor.bot.console import ConsoleRoom

    parts = make_parts(db_url, clock, **SETTINGS)
    rooms = {}
    for user, role in (("sam", "supervisor"), ("bob", None)):
        room, sender = parts.directory.add_console("LALB", user, "CBP" if role else "USCG", role)
        rooms[user] = ConsoleRoom(parts.engine, room, sender, out=io.StringIO())
    rooms["sam"].say("!watch on")
    rooms["bob"].poll()
    assert rooms["sam"].out.getvalue().count("is on watch") == 1
    assert rooms["bob"].out.getvalue() == "👁 [CBP] sam is on watch in LALB until 19:00 PST\n"


def test_a_watch_ending_by_itself_is_said_once_with_two_leaders_racing(pg_url, clock):
    replicas = [make_parts(pg_url, clock, **SETTINGS) for _ in range(2)]
    _say(replicas[0], MATRIX_WATCH, "matrix:@kim:localhost", "Kim Lee", "!watch on until=08:00")
    clock.advance(hours=1, minutes=1)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: escalate_due(replicas[i % 2].engine), range(12)))
    for room in (MATRIX_WATCH, SLACK_WATCH, "console:LALB"):
        ended = [p for p in _payloads(replicas[0], room, ("notice",)) if p.get("watch_change") == "lapsed"]
        assert len(ended) == 1, room
    for parts in replicas:
        parts.db.dispose()
