"""Deconfliction as the watch floor lives it, through the chat on SQLite and PostgreSQL.

Agencies log and nominate in the console room; alerts for the other watch rooms are read from the outbox, the
way the Slack and Matrix senders would take them.
"""
from __future__ import annotations

import json
import threading
import time

from sqlalchemy import event
from sqlmodel import col, select

from watchfloor.commands.conflicts_scan import scan_and_list
from watchfloor.commands.jobs import escalate_due, scan_all
from watchfloor.storage import audit as audit_chain
from watchfloor.storage.tables import AuditRow, ConflictRow, OperationRow, OutboxRow
from tests.helpers import ConsoleUser, make_parts

WATCH_LES = "matrix:!watch:localhost"     # the IOC's cleared watch room
WATCH_OPEN = "slack:C0WATCH"              # a partner watch room cleared for UNCLASS and FOUO only
DISTRICT = "matrix:!d11:localhost"
HERE = "at=33.74,-118.27"
NEAR = "at=33.741,-118.271"
FAR = "at=33.90,-118.60"

SETTINGS = dict(
    zone=[{"code": "LALB", "watch_rooms": [WATCH_LES, WATCH_OPEN]}],
    district=[{"name": "Southwest", "watch_rooms": [DISTRICT]}],
    room=[{"id": WATCH_LES, "clearance": ["UNCLASS", "FOUO", "LES"]},
          {"id": WATCH_OPEN, "clearance": ["UNCLASS", "FOUO"]},
          {"id": DISTRICT, "clearance": ["UNCLASS", "FOUO"]}],
    conflicts={"escalate_after_minutes": 15},
)


class Floor:
    """A zone's watch floor: agency people in the console room, and the outbox every other room reads."""

    def __init__(self, db_url, clock):
        self.clock = clock
        self.parts = make_parts(db_url, clock, **SETTINGS)
        self.alice = ConsoleUser(self.parts, "LALB", "alice", "CBP")
        self.bob = ConsoleUser(self.parts, "LALB", "bob", "USCG")
        self.carol = ConsoleUser(self.parts, "LALB", "carol", "HSI")
        self.sam = ConsoleUser(self.parts, "LALB", "sam", "CBP", "supervisor")
        self._seen: dict[str, int] = {}

    def posts(self, room: str, kinds=("alert",)) -> list[str]:
        """Raw payloads (text, HTML and Slack blocks together) posted to a room."""
        with self.parts.db.session() as s:
            rows = s.exec(select(OutboxRow).where(OutboxRow.room == room, col(OutboxRow.kind).in_(kinds))
                          .order_by(OutboxRow.id)).all()
        return [r.payload for r in rows]

    def texts(self, room: str, kinds=("alert",)) -> list[str]:
        return [json.loads(p)["text"] for p in self.posts(room, kinds)]

    def new(self, room: str, kinds=("alert",)) -> list[str]:
        """Texts posted to the room since the last call for it."""
        texts = self.texts(room, kinds)
        seen = self._seen.get(room + str(kinds), 0)
        self._seen[room + str(kinds)] = len(texts)
        return texts[seen:]

    def conflicts(self, **where) -> list[ConflictRow]:
        with self.parts.db.session() as s:
            q = select(ConflictRow).order_by(ConflictRow.id)
            for k, v in where.items():
                q = q.where(getattr(ConflictRow, k) == v)
            return list(s.exec(q).all())

    def audit_actions(self) -> list[tuple[str, str | None]]:
        with self.parts.db.session() as s:
            rows = s.exec(select(AuditRow).order_by(AuditRow.id)).all()
            assert audit_chain.verify(s)[1] is None
        return [(r.action, r.entity) for r in rows]

    def scan(self):
        return scan_all(self.parts.engine)


def _clash(f: Floor) -> None:
    """CBP boarding and USCG patrol at the same berth at the same time: CF-1."""
    assert "OP-1 logged" in f.alice.say(f'!op log boarding vessel=IMO9074729 {HERE} start=2026-12-01T14:00 end=2h '
                                        'contact="CBP desk 562-555-0100"')
    reply = f.bob.say(f'!op log patrol {NEAR} radius=1nm start=2026-12-01T15:00 end=2026-12-01T17:00 '
                      'contact="Sector LA/LB"')
    assert "OP-2 logged" in reply and "CF-1" in reply, reply


# --- the rules through the chat -----------------------------------------------------------------------------

def test_overlap_is_raised_once_and_the_alert_names_both_sides(db_url, clock):
    f = Floor(db_url, clock)
    _clash(f)
    for room in (WATCH_LES, WATCH_OPEN, "console:LALB"):
        alerts = f.new(room)
        assert len(alerts) == 1, room
        alert = alerts[0]
        assert "ALERT LALB: 1 new conflict" in alert and "CF-1 overlap" in alert
        for part in ("OP-1 CBP boarding", "OP-2 USCG patrol", "contact CBP desk 562-555-0100",
                     "contact Sector LA/LB", "33.7400,-118.2700", "33.7410,-118.2710",
                     "Tue 01 Dec 14:00 PST – 16:00 PST", "Tue 01 Dec 15:00 PST – 17:00 PST"):
            assert part in alert, (part, alert)
    # Updates and scans that leave the clash standing do not raise it again.
    assert "CF-" not in f.bob.say('!op update OP-2 note="moved to channel side"')
    assert "CF-" not in f.alice.say("!op update OP-1 end=3h")
    f.scan()
    f.scan()
    assert [c.key for c in f.conflicts()] == ["overlap:1:2"]
    assert f.new(WATCH_LES) == []
    lines = scan_and_list(f.parts.engine, "LALB")             # what `watchfloor conflicts scan` prints
    assert lines[0].startswith("CF-1 overlap open: OP-1 CBP boarding") and lines[-1] == "1 open conflict"
    assert ("conflict.raise", "CF-1") in f.audit_actions()
    listing = f.bob.say("!conflicts")
    assert "CF-1 overlap" in listing and "not acknowledged" in listing


def test_same_agency_and_touching_windows_never_conflict(db_url, clock):
    f = Floor(db_url, clock)
    dave = ConsoleUser(f.parts, "LALB", "dave", "CBP")
    f.alice.say(f"!op log boarding {HERE} start=2026-12-01T14:00 end=2h")
    assert "CF-" not in dave.say(f"!op log inspection {HERE} start=2026-12-01T14:30 end=1h")
    assert "CF-" not in f.bob.say(f"!op log patrol {HERE} start=2026-12-01T16:00 end=2h")   # starts as OP-1 ends
    assert "CF-" not in f.carol.say(f"!op log dive {FAR} start=2026-12-01T14:00 end=2h")    # 30 km away
    f.scan()
    assert f.conflicts() == []
    assert f.new(WATCH_LES) == []


def test_same_vessel_conflicts_when_less_than_six_hours_apart(db_url, clock):
    f = Floor(db_url, clock)
    f.alice.say(f"!op log boarding vessel=IMO9074729 {HERE} start=2026-12-01T14:00 end=2h")
    # Far apart in place, 5 h 59 min apart in time: duplicated effort on one ship.
    reply = f.bob.say(f"!op log inspection vessel=IMO9074729 {FAR} start=2026-12-01T21:59 end=1h")
    assert "CF-1" in reply
    assert [(c.kind, c.key) for c in f.conflicts()] == [("same-vessel", "same-vessel:1:2")]
    assert "same-vessel" in f.new(WATCH_LES)[0]
    # MMSI works the same way; six hours or more apart is separate work, not a conflict.
    f.alice.say(f"!op log boarding vessel=366123456 {FAR} start=2026-12-02T06:00 end=1h")
    assert "CF-" not in f.carol.say(f"!op log surveillance vessel=366123456 {HERE} start=2026-12-02T13:00 end=1h")
    assert "CF-2" in f.bob.say(f"!op log escort vessel=366123456 {HERE} start=2026-12-02T08:00 end=1h")
    # A name is not a shared identifier.
    f.alice.say(f'!op log boarding vessel="SEA BREEZE" {FAR} start=2026-12-03T06:00 end=1h')
    assert "CF-" not in f.carol.say(f'!op log boarding vessel="SEA BREEZE" {HERE} start=2026-12-03T06:00 end=1h')


def test_gap_is_raised_by_nominate_by_cancel_and_by_the_scan_as_time_passes(db_url, clock):
    f = Floor(db_url, clock)
    reply = f.alice.say('!target nominate IMO9074729 name="OCEAN PRIDE" eta=+5h priority=high reason="manifest"')
    assert "TGT-1" in reply and "CF-1" in reply, reply
    alert = f.new(WATCH_LES)[0]
    assert "CF-1 gap" in alert and "TGT-1 IMO9074729" in alert and "nobody is covering it" in alert
    # Cover arrives: the gap closes by itself and the watch rooms hear why.
    f.bob.say(f"!op log boarding vessel=IMO9074729 {HERE} start=+4h end=2h")
    closed = f.new(WATCH_LES)
    assert len(closed) == 1 and "CF-1 gap closed: now covered by USCG OP-1" in closed[0]
    # The cover is called off: nobody covers it again.
    reply = f.bob.say('!op cancel OP-1 reason="cutter diverted"')
    assert "CF-2" in reply
    assert "CF-2 gap" in f.new(WATCH_OPEN)[-1]
    # A medium target endorsed by two agencies, arriving in 30 h: not yet within the 24 h horizon.
    f.carol.say("!target nominate 366123456 eta=+30h")
    assert "TGT-2" in f.bob.say("!target nominate 366123456")         # USCG endorses the same vessel
    assert len(f.conflicts(kind="gap")) == 2
    assert not f.scan().raised
    f.clock.advance(hours=7)
    raised = f.scan().raised
    assert [(c.kind, c.target_id) for c in raised] == [("gap", 2)]
    assert "TGT-2" in f.new(WATCH_LES)[-1]
    assert not f.scan().raised                                        # raised once
    # Closing the target closes its gap.
    reply = f.carol.say('!target close TGT-2 outcome="arrived, boarded by port police"')
    assert f"CF-{raised[0].id}" in reply
    assert f.conflicts(target_id=2)[0].closed_reason == "target closed"
    actions = f.audit_actions()
    assert ("conflict.raise", "CF-1") in actions and ("conflict.close", "CF-1") in actions


def test_a_covering_operation_moved_to_another_vessel_leaves_a_gap(db_url, clock):
    f = Floor(db_url, clock)
    f.bob.say(f"!op log boarding vessel=IMO9074729 {HERE} start=+1h end=2h")
    assert "CF-" not in f.alice.say("!target nominate IMO9074729 eta=+5h priority=high")
    reply = f.bob.say("!op update OP-1 vessel=IMO9176187")
    assert "CF-1" in reply, reply
    assert f.conflicts()[0].kind == "gap"


def test_conflicts_close_by_themselves_with_a_reason(db_url, clock):
    f = Floor(db_url, clock)
    _clash(f)
    f.new(WATCH_LES)
    reply = f.bob.say(f"!op update OP-2 {FAR} radius=500m")
    assert "Closed: CF-1" in reply
    told = f.new(WATCH_LES)
    assert len(told) == 1 and "CF-1 overlap closed: OP-2 was changed and no longer conflicts" in told[0]
    assert f.new(WATCH_OPEN)[-1] == f.texts(WATCH_OPEN)[-1]
    # Moving back is a new conflict; cancelling and finishing close with their own reasons.
    assert "CF-2" in f.bob.say(f"!op update OP-2 {NEAR}")
    assert "CF-2" in f.bob.say("!op cancel OP-2")
    assert "CF-2 overlap closed: OP-2 was cancelled" in f.new(WATCH_LES)[-1]
    assert "CF-3" in f.carol.say(f"!op log dive {HERE} start=2026-12-01T15:00 end=1h")
    assert "CF-3" in f.alice.say('!op done OP-1 outcome="no findings"')
    assert f.conflicts(id=3)[0].closed_reason == "OP-1 is done"
    assert [c.status for c in f.conflicts()] == ["closed", "closed", "closed"]


def test_resolved_conflicts_come_back_only_when_an_operation_changes(db_url, clock):
    f = Floor(db_url, clock)
    _clash(f)
    f.bob.say('!op update OP-2 note="still planning"')                 # a change while it is open
    assert "resolved: proceed" in f.sam.say('!conflicts resolve CF-1 proceed note="different berths"')
    f.scan()
    f.alice.say(f"!op log patrol {FAR} start=2026-12-01T20:00 end=1h")   # unrelated traffic
    f.scan()
    assert len(f.conflicts()) == 1
    assert "no open conflicts" in f.bob.say("!conflicts").lower()
    assert "CF-1" in f.bob.say("!conflicts all")
    reply = f.bob.say("!op update OP-2 end=3h")                         # the plan changed: decide again
    assert "CF-2" in reply
    assert [c.status for c in f.conflicts()] == ["resolved", "open"]


def test_only_supervisors_acknowledge_and_resolve(db_url, clock):
    f = Floor(db_url, clock)
    _clash(f)
    assert "only a watch supervisor may use 'conflicts ack'" in f.alice.say("!conflicts ack CF-1")
    assert "only a watch supervisor may use 'conflicts resolve'" in f.bob.say("!conflicts resolve CF-1 joint")
    assert "unknown conflict CF-9" in f.sam.say("!conflicts ack CF-9")
    assert f.conflicts()[0].status == "open"
    reply = f.sam.say("!conflicts ack CF-1")
    assert "CF-1 acknowledged — owner sam" in reply
    assert any("CF-1 acknowledged" in t for t in f.new(WATCH_LES, kinds=("notice",)))
    reply = f.sam.say('!conflicts resolve CF-1 joint note="board together at 15:00"')
    assert "CF-1 resolved: joint" in reply and "board together" in reply
    assert "already resolved" in f.sam.say("!conflicts ack CF-1")
    assert "is not one of" in f.sam.say("!conflicts resolve CF-1 ignore")
    cf = f.conflicts()[0]
    assert (cf.status, cf.resolution, cf.resolved_by, cf.note) == ("resolved", "joint", "console:sam",
                                                                   "board together at 15:00")
    actions = f.audit_actions()
    assert ("conflict.ack", "CF-1") in actions and ("conflict.resolve", "CF-1") in actions


def _blocked_on_a_lock(db, holder, thread: threading.Thread):
    """A wait (no sleep) until `thread` is blocked behind `holder`'s transaction: PostgreSQL shows the waiting
    backend; SQLite's writer is about to wait for the write lock once it issues BEGIN IMMEDIATE."""
    if db.is_postgres:
        mine = holder.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()

        def waiting() -> bool:
            deadline = time.monotonic() + 30
            with db.engine.connect() as c:
                while time.monotonic() < deadline:
                    if c.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         f"AND pid <> {int(mine)}").scalar():
                        return True
                    c.rollback()
            return False
        return waiting
    reached = threading.Event()

    def before(conn, cursor, statement, *args):
        if threading.current_thread() is thread and statement.startswith("BEGIN IMMEDIATE"):
            reached.set()
    event.listen(db.engine, "before_cursor_execute", before)
    return lambda: reached.wait(30)


def test_an_ack_racing_an_automatic_close_does_not_reopen_it(db_url, clock):
    f = Floor(db_url, clock)
    _clash(f)
    deconf = f.parts.engine.deconfliction
    result = {}
    with f.parts.db.session() as s:
        row = s.get(OperationRow, 2)
        row.status, row.revision = "cancelled", row.revision + 1
        s.flush()
        closed = deconf.check_operation(s, row, clock(), "console:bob").closed
        assert [c.id for c in closed] == [1]
        # The supervisor acks while the cancel is still being committed.
        t = threading.Thread(target=lambda: result.update(reply=f.sam.say("!conflicts ack CF-1")))
        blocked = _blocked_on_a_lock(f.parts.db, s, t)
        t.start()
        assert blocked(), "the ack never reached the database"
        assert t.is_alive()                     # it waits for the close instead of reading the old state
    t.join(30)
    assert "CF-1 is already closed (OP-2 was cancelled)" in result["reply"]
    cf = f.conflicts()[0]
    assert (cf.status, cf.open_key, cf.acked_by) == ("closed", None, None)
    # Sequentially too: a closed conflict cannot be acknowledged or resolved.
    assert "already closed" in f.sam.say("!conflicts resolve CF-1 proceed")


def test_several_conflicts_from_one_command_make_one_alert_per_watch_room(db_url, clock):
    f = Floor(db_url, clock)
    f.alice.say(f"!op log boarding {HERE} start=2026-12-01T14:00 end=2h")
    f.carol.say(f"!op log dive {NEAR} start=2026-12-01T18:00 end=2h")
    for room in (WATCH_LES, WATCH_OPEN, "console:LALB"):
        f.new(room)
    reply = f.bob.say(f"!op log security-zone {HERE} radius=2km start=2026-12-01T13:00 end=2026-12-01T21:00")
    assert "Conflicts raised: CF-1, CF-2" in reply, reply
    for room in (WATCH_LES, WATCH_OPEN, "console:LALB"):
        alerts = f.new(room)
        assert len(alerts) == 1, room
        assert "2 new conflicts" in alerts[0] and "CF-1" in alerts[0] and "CF-2" in alerts[0]
    payload = json.loads(f.posts(WATCH_OPEN)[-1])
    actions = [e["action_id"] for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "ack:CF-1" in actions and "ack:CF-2" in actions


def test_escalation_goes_once_to_the_district_and_not_after_an_ack(db_url, clock):
    f = Floor(db_url, clock)
    _clash(f)
    f.carol.say(f"!op log dive {HERE} start=2026-12-02T09:00 end=1h")
    assert "CF-2" in f.bob.say(f"!op log patrol {HERE} start=2026-12-02T09:30 end=1h")
    f.sam.say("!conflicts ack CF-2")
    clock.advance(minutes=14)
    assert escalate_due(f.parts.engine) == []
    assert f.texts(DISTRICT, kinds=("escalation",)) == []
    clock.advance(minutes=2)
    assert [c.id for c in escalate_due(f.parts.engine)] == [1]
    escalations = f.texts(DISTRICT, kinds=("escalation",))
    assert len(escalations) == 1
    assert "ESCALATED" in escalations[0] and "CF-1" in escalations[0] and "CF-2" not in escalations[0]
    assert "OP-1 CBP boarding" in escalations[0]
    clock.advance(minutes=30)
    assert escalate_due(f.parts.engine) == []
    assert len(f.texts(DISTRICT, kinds=("escalation",))) == 1
    assert ("conflict.escalate", "CF-1") in f.audit_actions()
    assert "escalated" in f.sam.say("!conflicts")


def test_les_details_never_reach_a_watch_room_not_cleared_for_them(db_url, clock):
    f = Floor(db_url, clock)
    secret = ("informant-7", "CBP LES desk 562-555-0199", "33.7400,-118.2700", "IMO9074729", "boarding")
    f.alice.say(f'!op log boarding vessel=IMO9074729 {HERE} start=2026-12-01T14:00 end=2h mark=LES '
                f'note="{secret[0]}" contact="{secret[1]}"')
    reply = f.bob.say(f"!op log patrol {NEAR} start=2026-12-01T15:00 end=2h")
    assert "CF-1" in reply
    cleared = f.posts(WATCH_LES)[-1]
    assert "OP-1 CBP boarding [LES]" in json.loads(cleared)["text"] and secret[1] in cleared
    withheld = f.posts(WATCH_OPEN)[-1]
    text = json.loads(withheld)["text"]
    assert "CF-1 overlap conflict involving LES items; details withheld" in text
    assert WATCH_LES in text                                    # where the details are
    for s in secret + ("OP-2 USCG",):
        assert s not in withheld, s
    # Acknowledging, resolving with a note, closing and escalating keep the secret too.
    clock.advance(minutes=16)
    escalate_due(f.parts.engine)
    f.sam.say('!conflicts ack CF-1')
    f.sam.say(f'!conflicts resolve CF-1 delay note="wait for {secret[0]}"')
    f.alice.say(f"!op update OP-1 {FAR}")
    for room in (WATCH_OPEN, DISTRICT):
        for payload in f.posts(room, kinds=("alert", "notice", "escalation")):
            for s in secret:
                assert s not in payload, (room, s, payload)
    assert any(secret[0] in p for p in f.posts(WATCH_LES, kinds=("notice",)))
    # A console reader whose agency is not cleared for LES sees that it exists, not what it is.
    port = ConsoleUser(f.parts, "LALB", "pat", "PORT")
    listing = port.say("!conflicts all")
    assert "CF-1" in listing and "details withheld" in listing
    for s in secret:
        assert s not in listing


def test_scan_leaves_history_alone_and_closes_conflicts_of_operations_long_over(db_url, clock):
    """A zone's history is full of operations never marked done; the periodic scan must not alert on them,
    and a conflict whose operations are long over closes by itself, saying so."""
    floor = Floor(db_url, clock)
    floor.alice.say(f"!op log patrol {HERE} start=2026-12-01T10:00 end=2h")
    reply = floor.bob.say(f"!op log patrol {NEAR} start=2026-12-01T11:00 end=2h")
    assert "CF-1" in reply
    floor.new(WATCH_LES)
    # Two more that clashed last week, imported or logged after the fact, are not raised by a scan.
    with floor.parts.db.session() as s:
        before = len(s.exec(select(ConflictRow)).all())
    floor.alice.say(f"!op log patrol {FAR} start=2026-11-20T10:00 end=2h")
    floor.carol.say(f"!op log patrol {FAR} start=2026-11-20T10:30 end=2h")
    raised_by_commands = len(floor.conflicts()) - before
    clock.advance(hours=3)
    floor.scan()
    assert [c.status for c in floor.conflicts(key="overlap:1:2")] == ["open"]  # still within the window
    clock.advance(hours=12)  # both ended (20:00 and 21:00 UTC) more than the 6 h same-vessel window ago
    floor.scan()
    cf = floor.conflicts(key="overlap:1:2")[0]
    assert cf.status == "closed" and "has ended" in cf.closed_reason
    assert any("closed" in t and "has ended" in t for t in floor.new(WATCH_LES))
    # The scan raised nothing for last week's pair beyond what the commands themselves raised.
    assert len(floor.conflicts(status="open")) <= raised_by_commands


def test_a_supervisor_can_ack_an_escalation_from_the_district_room(db_url, clock):
    from watchfloor.commands.message import ChatMessage

    floor = Floor(db_url, clock)
    floor.alice.say(f"!op log patrol {HERE} start=2026-12-01T10:00 end=2h")
    floor.bob.say(f"!op log patrol {NEAR} start=2026-12-01T11:00 end=2h")
    clock.advance(minutes=16)
    assert [c.id for c in escalate_due(floor.parts.engine)] == [1]
    handled = floor.parts.engine.handle(ChatMessage(
        platform="matrix", room=DISTRICT, sender=floor.sam.sender.id, text="!conflicts ack CF-1", event_id="d1"))
    reply = json.loads(handled.rows[0].payload)["text"]
    assert "CF-1 acknowledged" in reply, reply
    assert floor.conflicts(id=1)[0].status == "acked"
    # Someone who is not a supervisor is refused there too, and a conflict of another district is unknown.
    refused = floor.parts.engine.handle(ChatMessage(
        platform="matrix", room=DISTRICT, sender=floor.bob.sender.id, text="!conflicts resolve CF-1 joint",
        event_id="d2"))
    assert "only a watch supervisor" in json.loads(refused.rows[0].payload)["text"]
