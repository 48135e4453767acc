"""Regressions found in review: marked text that hid its marking, copies posted after being withdrawn, a
conflict that kept its old marking, cover by an operation long over, and ids too large for the database."""
from __future__ import annotations

import json

from sqlmodel import select

from watchfloor.bot.bridge import Bridge
from watchfloor.bot.matrix.events import chat_message
from watchfloor.bot.slack.markup import unescape as _unescape
from watchfloor.commands.message import ChatMessage
from watchfloor.ioc.markings import Marking, marking_of_text
from watchfloor.storage.tables import OutboxRow
from tests.helpers import ConsoleUser, make_parts

OPEN_ROOM, LES_ROOM, WATCH_OPEN = "matrix:!open:localhost", "slack:CLES", "slack:CWATCH"
SETTINGS = dict(
    zone=[{"code": "LALB", "joint_rooms": [OPEN_ROOM, LES_ROOM], "watch_rooms": [WATCH_OPEN]}],
    room=[{"id": LES_ROOM, "clearance": ["UNCLASS", "FOUO", "LES"]},
          {"id": OPEN_ROOM, "clearance": ["UNCLASS"]}, {"id": WATCH_OPEN, "clearance": ["UNCLASS", "FOUO"]}],
    agency=[{"code": "CBP", "members": ["slack:UALICE"], "clearance": ["UNCLASS", "FOUO", "LES"]}],
)


def _rows(parts, room):
    with parts.db.session() as s:
        return list(s.exec(select(OutboxRow).where(OutboxRow.room == room).order_by(OutboxRow.id)).all())


def test_a_quoted_les_message_from_slack_keeps_its_marking(sqlite_url, clock):
    text = _unescape("&gt; [LES] suspect aboard &amp; armed")
    assert text == "> [LES] suspect aboard & armed"
    assert marking_of_text(text) is Marking.LES
    parts = make_parts(sqlite_url, clock, **SETTINGS)
    Bridge(parts).relay(ChatMessage("slack", LES_ROOM, "slack:UALICE", text, "1700000000.000100", "Alice"))
    assert _rows(parts, OPEN_ROOM) == []


def test_a_matrix_emote_keeps_its_marking_and_is_relayed_as_an_emote(sqlite_url, clock):
    les_matrix = "matrix:!les:localhost"
    parts = make_parts(sqlite_url, clock, **{
        **SETTINGS, "zone": [{"code": "LALB", "joint_rooms": [les_matrix, OPEN_ROOM], "watch_rooms": [WATCH_OPEN]}],
        "room": [*SETTINGS["room"], {"id": les_matrix, "clearance": ["UNCLASS", "FOUO", "LES"]}]})

    def emote(event_id: str, body: str):
        return chat_message("!les:localhost", {"type": "m.room.message", "event_id": event_id,
                                               "sender": "@alice:localhost",
                                               "content": {"msgtype": "m.emote", "body": body}}, "Alice")

    marked = emote("$e1", "[LES] slips aboard the Ocean Star at 0300")
    assert marked.extra.get("emote")
    Bridge(parts).relay(marked)
    assert _rows(parts, OPEN_ROOM) == []  # `/me [LES] ...` stays out of the uncleared room
    Bridge(parts).relay(emote("$e2", "waves"))
    [row] = _rows(parts, OPEN_ROOM)
    text = json.loads(row.payload)["text"]
    assert text.startswith("* ") and text.endswith("waves")


def test_a_copy_still_waiting_is_withdrawn_when_the_original_is_marked_les_or_deleted(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, **SETTINGS)
    bridge = Bridge(parts)
    bridge.relay(ChatMessage("slack", LES_ROOM, "slack:UALICE", "suspect John Doe aboard", "1.1", "Alice"))
    bridge.relay(ChatMessage("slack", LES_ROOM, "slack:UALICE", "[LES] suspect John Doe aboard", "1.1:edit:2",
                             "Alice", extra={"edit_of": "1.1"}))
    copy, redact = _rows(parts, OPEN_ROOM)
    assert copy.kind == "relay" and copy.status == "dead"      # never posted in the uncleared room
    assert redact.kind == "redact"
    bridge.relay(ChatMessage("slack", LES_ROOM, "slack:UALICE", "another", "3.3", "Alice"))
    bridge.relay(ChatMessage("slack", LES_ROOM, "slack:UALICE", "", "3.3:del", "Alice", extra={"redacts": "3.3"}))
    statuses = [(r.kind, r.status) for r in _rows(parts, OPEN_ROOM)[2:]]
    assert statuses == [("relay", "dead"), ("redact", "pending")]


def test_marking_an_operation_up_takes_its_conflict_out_of_uncleared_rooms(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    alice.say("!op log patrol at=33.74,-118.27 start=+1h end=2h")
    assert "CF-1" in bob.say("!op log patrol at=33.741,-118.271 start=+1h end=2h contact=\"bob 555\"")
    alice.say("!op update OP-1 mark=LES")
    port = ConsoleUser(parts, "LALB", "pat", "PORT")  # cleared for UNCLASS and FOUO only
    listing = port.say("!conflicts")
    assert "CF-1" in listing and "withheld" in listing
    assert "bob 555" not in listing and "33.741" not in listing


def test_an_operation_long_over_does_not_cover_a_priority_arrival(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say("!op log boarding vessel=IMO9074729 start=2026-11-20T10:00 end=2h")  # last week, never marked done
    reply = alice.say("!target nominate IMO9074729 priority=high eta=+3h")
    assert "gap" in reply.lower() and "CF-1" in reply


def test_an_id_too_large_for_the_database_is_just_unknown(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")  # may ack: the id itself is looked at
    asks = [(alice, "!op show OP-99999999999"), (alice, "!op update OP-99999999999 note=x"),
            (alice, "!target show TGT-99999999999"), (alice, "!target endorse TGT-99999999999"),
            (sam, "!conflicts ack CF-99999999999"), (sam, "!conflicts resolve CF-99999999999 joint")]
    wrong = [(text, reply) for who, text in asks if not (reply := who.say(text)).startswith("⚠ id:")]
    assert wrong == []


def test_a_vessel_keeps_one_open_target_even_when_the_nominator_may_not_read_it(db_url, clock):
    from watchfloor.storage.tables import TargetRow

    parts = make_parts(db_url, clock)
    hank = ConsoleUser(parts, "LALB", "hank", "HSI")     # cleared for LES
    assert hank.say('!target nominate IMO9074729 mark=LES reason="informant: cocaine in hold 3"').startswith("TGT-1")
    pat = ConsoleUser(parts, "LALB", "pat", "PORT")      # UNCLASS and FOUO only (its console room too)
    reply = pat.say("!target nominate IMO9074729 priority=high")
    assert "TGT-1" in reply and "withheld" in reply and "cocaine" not in reply
    with parts.db.session() as s:
        assert len(s.exec(select(TargetRow)).all()) == 1


def test_an_update_cannot_leave_an_operation_nowhere(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say("!op log boarding vessel=IMO9074729 start=+1h end=2h")
    assert alice.say('!op update OP-1 vessel=""').startswith("⚠ at:")
    assert "IMO9074729" in alice.say("!op show OP-1")


def test_participation_in_an_uncleared_room_does_not_show_activity_on_les_items(db_url, clock):
    from watchfloor.commands.briefing import participation
    from watchfloor.ioc.markings import ALL_MARKINGS

    parts = make_parts(db_url, clock)
    hank = ConsoleUser(parts, "LALB", "hank", "HSI")
    hank.say("!op log surveillance at=33.72,-118.25 start=+1h end=2h mark=LES")
    with parts.db.session() as s:
        open_room = {p["agency"]: p for p in participation(s, "LALB", clock.now, clearance={Marking.UNCLASS})}
        cleared = {p["agency"]: p for p in participation(s, "LALB", clock.now, clearance=ALL_MARKINGS)}
    assert cleared["HSI"]["ops"] == 1 and cleared["HSI"]["last"] is not None
    assert "HSI" not in open_room or (open_room["HSI"]["ops"] == 0 and open_room["HSI"]["last"] is None)


def _command_imports() -> dict[str, set[str]]:
    """Which watchfloor.commands modules each one imports, read from the source (imports inside functions too:
    an import moved into a function to dodge a circle is still a circle)."""
    import ast
    from pathlib import Path

    import watchfloor.commands as package

    folder = Path(package.__path__[0])
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in modules:
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level == 1 or base.startswith("watchfloor.commands"):
                    base = base.removeprefix("watchfloor.commands").lstrip(".")
                    targets = [base.split(".")[0]] if base else [a.name for a in node.names]
                    edges.update(t for t in targets if t in modules)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("watchfloor.commands."):
                        edges.add(a.name.split(".")[2])
    return graph


def test_the_command_modules_import_each_other_without_a_circle():
    graph = _command_imports()
    assert "context" in graph["ops"] and "engine" not in graph["ops"]   # the reader sees real edges
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", "import circle: " + " -> ".join(path[path.index(nxt):] + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
