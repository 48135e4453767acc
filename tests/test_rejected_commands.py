"""A rejected command leaves nothing behind: every table, every column, exactly as before.

Two tables are written by every command, rejected or not, and are checked for exactly what a rejection writes:
`handled_event` gets the claim on the message id (so a redelivered message is not answered twice) and `outbox`
gets the one-line error reply. Nothing else may change, not even part of a change: the commands below are mostly
partially valid, their first keys good and a later one bad, so a handler that had already applied the good keys
to the row must have them rolled back.
"""
from __future__ import annotations

import itertools
import json

import pytest
from sqlalchemy import inspect, text

from tests.helpers import ConsoleUser, make_parts

# Written by every command; what a rejection may add to them is checked row by row in `assert_left_nothing`.
EVENT_TABLES = ("handled_event", "outbox")
_events = itertools.count(1)


class Snapshot:
    """The whole content of every table of a database, in primary-key order."""

    def __init__(self, db):
        self.db = db
        with db.engine.connect() as conn:
            insp = inspect(conn)
            self.tables = {}
            for t in sorted(insp.get_table_names()):
                cols = [c["name"] for c in insp.get_columns(t)]
                pk = insp.get_pk_constraint(t)["constrained_columns"] or cols
                self.tables[t] = (cols, pk)

    def take(self, skip: tuple[str, ...] = ()) -> dict[str, object]:
        tables = {t: spec for t, spec in self.tables.items() if t not in skip}
        out: dict[str, object] = {}
        with self.db.engine.connect() as conn:
            if self.db.is_sqlite:
                # One string per table, all built by SQLite in one statement: cheap enough after every command.
                whole = {t: spec for t, spec in tables.items() if t not in EVENT_TABLES}
                parts = []
                for t, (cols, pk) in whole.items():
                    row = " || ',' || ".join(f"quote({_q(c)})" for c in cols)
                    parts.append(f"(SELECT group_concat(r, char(10)) FROM (SELECT {row} AS r FROM {_q(t)} "
                                 f"ORDER BY {', '.join(_q(c) for c in pk)}))")
                out.update(zip(whole, conn.execute(text("SELECT " + ", ".join(parts))).one()))
            for t, (cols, pk) in tables.items():
                if t not in out:
                    columns, order = ", ".join(_q(c) for c in cols), ", ".join(_q(c) for c in pk)
                    out[t] = [tuple(r) for r in conn.execute(text(f"SELECT {columns} FROM {_q(t)} ORDER BY {order}"))]
        return out


def _q(name: str) -> str:
    return f'"{name}"'


def assert_left_nothing(snap: Snapshot, before: dict, after: dict, event_id: str, command: str) -> None:
    """`after` is `before` plus the rejected message's claim and its error reply, and nothing else."""
    changed = [t for t in before if t not in EVENT_TABLES and before[t] != after[t]]
    assert changed == [], f"rejected {command!r} changed {changed}"
    old_claims, new_claims = before["handled_event"], after["handled_event"]
    assert new_claims[:len(old_claims)] == old_claims
    [claim] = new_claims[len(old_claims):]
    assert event_id in claim
    old_out, new_out = before["outbox"], after["outbox"]
    assert new_out[:len(old_out)] == old_out, "a rejected command changed a message already in the outbox"
    [reply] = new_out[len(old_out):]
    cols = dict(zip(snap.tables["outbox"][0], reply))
    payload = json.loads(cols["payload"])
    assert cols["kind"] == "reply" and payload["reply_to"] == event_id and payload["text"].startswith("⚠ ")


@pytest.fixture
def floor(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    assert "OP-1 logged" in alice.say('!op log boarding vessel=IMO9074729 at=33.74,-118.27 start=+1h end=2h '
                                      'note="pilot boards at the berth"')
    assert "CF-1" in bob.say("!op log patrol at=33.741,-118.271 start=+1h end=2h")
    assert alice.say('!target nominate IMO9074729 name="SEA SPRITE" priority=high eta=+3h').startswith("TGT-1")
    yield parts, Snapshot(parts.db), {"alice": alice, "bob": bob, "sam": sam}
    parts.db.dispose()


# (who, command, the field the one-line reason names)
REJECTED = [
    ("alice", "!op update OP-1 at=34.5,-119 end=banana", "end"),
    ("alice", "!op update OP-1 type=patrol at=95,0", "at"),
    ("alice", "!op update OP-1 vessel=366123456 at=33.9,-118.6 radius=5km start=+2h end=9999h", "end"),
    ("alice", "!op update OP-1 at=33.9,-118.6 start=+30m mark=SECRET", "mark"),
    ("alice", "!op update OP-1 radius=3km note=\"moved\" contact=\"" + "x" * 201 + "\"", "contact"),
    ("alice", "!op update OP-1 at=33.9,-118.6 bogus=1", "bogus"),
    ("bob", "!op update OP-2 at=33.9,-118.6 start=+5h end=1h vessel=IMO9074728", "vessel"),
    ("bob", "!op update OP-1 at=33.9,-118.6", "permission"),
    ("alice", "!op cancel OP-1 reason=\"" + "x" * 501 + "\"", "reason"),
    ("alice", "!op done OP-1 outcome=\"ok\" extra=1", "extra"),
    ("alice", "!op log patrol at=33.74,-118.27 start=+1h end=banana", "end"),
    ("alice", "!target update TGT-1 eta=+5h name=\"NEW NAME\" priority=urgent", "priority"),
    ("alice", "!target update TGT-1 name=\"NEW NAME\" eta=+5h priority=low mark=SECRET", "mark"),
    ("alice", "!target close TGT-1", "outcome"),
    ("alice", "!target nominate 366123456 name=\"OTHER\" eta=+2h priority=urgent", "priority"),
    ("sam", "!conflicts resolve CF-1 maybe", "resolution"),
    ("sam", "!conflicts resolve CF-1 joint note=\"" + "x" * 1001 + "\"", "note"),
    ("alice", "!conflicts ack CF-1", "permission"),
]


def test_rejected_commands_leave_every_table_as_it_was(floor):
    parts, snap, people = floor
    before = snap.take()
    for who, command, field in REJECTED:
        event_id = f"rejected-{next(_events)}"
        reply = people[who].say(command, event_id=event_id)
        assert reply.startswith(f"⚠ {field}:") and "\n" not in reply, (command, reply)
        after = snap.take()
        assert_left_nothing(snap, before, after, event_id, command)
        before = after
    # The same commands made valid do change things: the comparison above can see a change.
    people["alice"].say("!op update OP-1 at=34.5,-119")
    assert snap.take()["operation"] != before["operation"]
