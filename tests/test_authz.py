"""Who may do what, and targets: one agency nominates, others join; owners and supervisors change things."""
from __future__ import annotations

from sqlmodel import func, select

from watchfloor.storage.tables import AuditRow, EndorsementRow, OperationRow, TargetRow
from tests.helpers import ConsoleUser, make_parts

LOG = "!op log boarding vessel=IMO9074729 at=33.74,-118.27 start=2026-12-01T14:00 end=2h"


def count(parts, table) -> int:
    with parts.db.session() as s:
        return s.exec(select(func.count()).select_from(table)).one()


def test_no_agency_reads_but_cannot_log_or_nominate(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say(LOG)
    nobody = ConsoleUser(parts, "LALB", "walt")
    assert "OP-1 CBP boarding" in nobody.say("!op list all")
    assert "OP-1" in nobody.say("!op show OP-1")
    assert nobody.say("!target list").startswith("Targets in LALB")
    assert nobody.say("!conflicts").startswith("Conflicts in LALB")
    assert nobody.say("!zone").startswith("LALB")
    assert "op log" in nobody.say("!help")
    audits = count(parts, AuditRow)
    for text in (LOG.replace("09:00", "10:00"), "!target nominate IMO9074729 priority=high"):
        reply = nobody.say(text)
        assert reply.startswith("⚠ permission: you are not a member of any agency"), reply
        assert "\n" not in reply
    assert count(parts, OperationRow) == 1 and count(parts, TargetRow) == 0 and count(parts, AuditRow) == audits


def test_member_cannot_change_another_agencys_op_but_a_supervisor_can(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    alice.say(LOG)
    for text in ("!op update OP-1 note=mine", "!op cancel OP-1", "!op done OP-1"):
        assert bob.say(text) == "⚠ permission: this belongs to CBP; only CBP or a supervisor may change it"
    with parts.db.session() as s:
        row = s.get(OperationRow, 1)
        assert (row.status, row.note, row.revision) == ("planned", None, 1)
    assert alice.say("!op update OP-1 note=\"pilot 0600\"").startswith("OP-1 updated")
    sue = ConsoleUser(parts, "LALB", "sue", "USCG", "supervisor")
    assert "cancelled" in sue.say('!op cancel OP-1 reason="weather"')
    with parts.db.session() as s:
        row = s.get(OperationRow, 1)
        assert (row.status, row.note, row.outcome) == ("cancelled", "pilot 0600", "weather")


def test_only_supervisors_ack_resolve_assign(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    alice.say(LOG)
    assert "CF-1" in bob.say("!op log patrol at=33.741,-118.271 start=2026-12-01T15:00 end=2h")
    alice.say("!target nominate IMO9074729 priority=high")
    for text in ("!conflicts ack CF-1", "!conflicts resolve CF-1 joint", "!target assign TGT-1 USCG"):
        reply = bob.say(text)
        assert reply.startswith("⚠ permission: only a watch supervisor may use"), reply
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    assert "CF-1" in sam.say("!conflicts ack CF-1")
    assert sam.say('!conflicts resolve CF-1 joint note="board together"').startswith("CF-1 resolved")
    assert "assigned to USCG" in sam.say("!target assign TGT-1 uscg")


def test_second_agency_nominating_the_same_vessel_joins_the_open_target(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    first = alice.say('!target nominate IMO9074729 eta=+30h priority=high reason="tip from HSI"')
    assert first.startswith("TGT-1 nominated") and "ETA Wed 02 Dec 13:00 PST" in first
    joined = bob.say("!target nominate imo9074729 priority=low")
    assert "TGT-1" in joined and "USCG now endorses TGT-1" in joined and "TGT-2" not in joined
    assert "endorsed by CBP, USCG" in joined
    again = bob.say("!target endorse TGT-1")
    assert "TGT-1" in again
    assert count(parts, TargetRow) == 1 and count(parts, EndorsementRow) == 2
    with parts.db.session() as s:
        assert s.get(TargetRow, 1).priority == "high"  # the joiner's keys do not overwrite the target
    # another vessel, another target
    assert bob.say("!target nominate 366123456").startswith("TGT-2 nominated")


def test_target_update_assign_close(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    alice.say("!target nominate IMO9074729 eta=+30h")
    assert bob.say("!target update TGT-1 priority=high").startswith("⚠ permission: this belongs to CBP")
    assert "high" in alice.say("!target update TGT-1 priority=high eta=2026-12-03T08:00")
    assert alice.say("!target update TGT-1 priority=urgent") == "⚠ priority: 'urgent' is not one of high, medium, low"
    sam = ConsoleUser(parts, "LALB", "sam", "USCG", "supervisor")
    assert sam.say("!target assign TGT-1 NOPE") == "⚠ agency: unknown agency 'NOPE'"
    assert sam.say("!target assign TGT-1").startswith("⚠ agency: missing")
    assert "assigned to HSI" in sam.say("!target assign TGT-1 HSI")
    assert alice.say("!target close TGT-1").startswith("⚠ outcome: required")
    assert alice.say('!target close TGT-1 outcome=" "').startswith("⚠ outcome: required")
    with parts.db.session() as s:
        t = s.get(TargetRow, 1)
        assert (t.status, t.priority, t.assigned_agency) == ("open", "high", "HSI")
    assert "closed" in alice.say('!target close TGT-1 outcome="boarded, nothing found"')
    assert "TGT-1" not in alice.say("!target list") and "TGT-1" in alice.say("!target list all")
    assert alice.say("!target endorse TGT-1") == "⚠ id: TGT-1 is closed"
    # after closing, the same vessel may be nominated afresh
    assert bob.say("!target nominate IMO9074729").startswith("TGT-2 nominated")
