"""A second agency nominating a vessel that already has an open target: nothing it said is dropped silently."""
from __future__ import annotations

from tests.helpers import ConsoleUser, make_parts

FIRST = '!target nominate IMO9074729 priority=medium eta=2026-12-03T08:00 reason="manifest mismatch"'


def test_values_a_second_nomination_did_not_apply_are_named_with_the_update_that_would(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    assert "TGT-1 nominated" in alice.say(FIRST)
    reply = bob.say('!target nominate IMO9074729 priority=high eta=2026-12-02T06:00 reason="tip from pilot"')
    lines = reply.splitlines()
    assert lines[0].startswith("USCG now endorses TGT-1"), reply
    assert lines[1] == ('⚠ Not applied, TGT-1 keeps its own: priority=high (stays medium), '
                        'eta=Wed 02 Dec 06:00 PST (stays Thu 03 Dec 08:00 PST), '
                        'reason="tip from pilot" (stays "manifest mismatch").'), reply
    # bob's agency did not nominate it, so he is told who can, and the exact command
    update = 'target update TGT-1 priority=high eta=2026-12-02T06:00 reason="tip from pilot"'
    assert lines[2] == f"Only CBP (nominating agency) or a watch supervisor can change them: {update}", reply
    shown = alice.say("!target show TGT-1")
    assert "· medium ·" in shown and "manifest mismatch" in shown and "endorsed by CBP, USCG" in shown
    # the command as given works for the nominating agency
    after = alice.say("!" + update)
    assert "TGT-1 updated" in after and "· high ·" in after and "Wed 02 Dec 06:00 PST" in after, after
    assert "Reason: tip from pilot" in after


def test_the_nominating_agency_is_told_how_to_apply_its_own_values(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say(FIRST)
    reply = alice.say("!target nominate IMO9074729 priority=low")
    assert reply.splitlines()[1:] == ["⚠ Not applied, TGT-1 keeps its own: priority=low (stays medium).",
                                      "To apply them: target update TGT-1 priority=low"], reply


def test_values_equal_to_the_target_are_not_reported_and_bad_values_store_nothing(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    alice.say(FIRST)
    same = bob.say('!target nominate IMO9074729 priority=medium reason="manifest mismatch"')
    assert "Not applied" not in same and "USCG now endorses TGT-1" in same, same
    carol = ConsoleUser(parts, "LALB", "carol", "HSI")
    assert carol.say("!target nominate IMO9074729 priority=urgent") == (
        "⚠ priority: 'urgent' is not one of high, medium, low")
    shown = alice.say("!target show TGT-1")
    assert "endorsed by CBP, USCG" in shown and "HSI" not in shown, shown  # nothing of carol's was recorded


def test_a_target_the_sender_may_not_read_is_not_compared_but_every_value_is_named(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock)
    bob = ConsoleUser(parts, "LALB", "bob", "PORT")      # the port authority: cleared for UNCLASS and FOUO
    hank = ConsoleUser(parts, "LALB", "hank", "HSI")     # the console room is now cleared for LES too
    assert "TGT-1 nominated" in hank.say("!target nominate IMO9074729 priority=high mark=LES reason=informant")
    reply = bob.say("!target nominate IMO9074729 priority=low reason=routine")
    assert "informant" not in reply and "high" not in reply and "HSI" not in reply, reply
    assert ("⚠ Not applied (this target's details are withheld here): priority=low, reason=\"routine\"."
            in reply.splitlines()), reply
    assert "room cleared for LES: target update TGT-1 priority=low reason=\"routine\"" in reply, reply
