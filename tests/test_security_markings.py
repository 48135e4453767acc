"""Handling markings end to end: every output path × marking × room clearance × reader clearance, zero leaks.

One zone with joint, watch and district rooms at every clearance (and rooms that hide withheld stubs), three
agencies at three clearances. Items of each marking carry unique tokens in every detail field (vessel, place,
contact, note, reason, outcome); after every output path has run, every message the bot posted in any room is
searched for the tokens of markings that room (and, for a reply, that reader) may not see.
"""
from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import select

from watchfloor.bot.bridge import Bridge
from watchfloor.commands.overdue import nudge_overdue
from watchfloor.commands.briefing import build_briefing
from watchfloor.commands.message import ChatMessage
from watchfloor.commands.posting import CLEARANCE_LEVELS, clearance_key
from watchfloor.ioc.markings import Marking, may_show
from watchfloor.ioc.zones import get_zone
from watchfloor.storage.tables import OutboxRow
from watchfloor.templates import render
from tests.helpers import make_parts

J_U, J_F, J_L, J_H = "matrix:!ju:localhost", "matrix:!jf:localhost", "matrix:!jl:localhost", "slack:CJHIDE"
W_U, W_L, W_H = "matrix:!wu:localhost", "slack:CWLES", "matrix:!wh:localhost"
D_U, D_L = "matrix:!du:localhost", "slack:CDLES"
ALICE, SAM = "matrix:@alice:localhost", "matrix:@sam:localhost"   # CBP: UNCLASS, FOUO, LES
BOB, PAT = "slack:UBOB", "matrix:@pat:localhost"                  # USCG: UNCLASS, FOUO; PD: UNCLASS
READERS = {ALICE: "alice", BOB: "bob", PAT: "pat"}
MARKS = ("UNCLASS", "FOUO", "LES")
LAT = {"UNCLASS": 33.61, "FOUO": 33.63, "LES": 33.65}
_events = itertools.count(1)


def tokens(m: str) -> list[str]:
    """Every detail of the items marked `m`; none may appear where `m` may not be shown."""
    k = m.lower()
    return [f"zqship{k}", f"zqnote{k}", f"zqcontact{k}", f"{LAT[m]:.4f}", f"zqtship{k}", f"zqreason{k}",
            f"zqresnote{k}", f"zqcancel{k}", f"zqbridge{k}"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('marks') / 'marks.db'}"
    from tests.conftest import Clock

    clock = Clock()
    parts = make_parts(
        url, clock,
        zone=[{"code": "LALB", "joint_rooms": [J_U, J_F, J_L, J_H], "watch_rooms": [W_U, W_L, W_H]}],
        district=[{"name": "Southwest", "watch_rooms": [D_U, D_L]}],
        room=[{"id": J_F, "clearance": ["UNCLASS", "FOUO"]},
              {"id": J_L, "clearance": ["UNCLASS", "FOUO", "LES"]},
              {"id": J_H, "clearance": ["UNCLASS"], "show_withheld": False},
              {"id": W_L, "clearance": ["UNCLASS", "FOUO", "LES"]},
              {"id": W_H, "clearance": ["UNCLASS"], "show_withheld": False},
              {"id": D_L, "clearance": ["UNCLASS", "FOUO", "LES"]}],
        agency=[{"code": "CBP", "members": [ALICE], "supervisors": [SAM], "clearance": ["UNCLASS", "FOUO", "LES"]},
                {"code": "USCG", "members": [BOB], "clearance": ["UNCLASS", "FOUO"]},
                {"code": "PD", "members": [PAT], "clearance": ["UNCLASS"]}],
    )
    w = World(parts, clock)
    w.run_every_output_path()
    yield w
    parts.db.dispose()


class World:
    def __init__(self, parts, clock):
        self.parts, self.clock = parts, clock
        self.refs: dict[str, dict[str, str]] = {m: {} for m in MARKS}
        self.replies: dict[tuple[str, str, str], str] = {}
        self.briefings: list[tuple[frozenset, bool, dict]] = []

    def say(self, room: str, sender: str, body: str) -> str:
        platform = room.split(":", 1)[0]
        handled = self.parts.engine.handle(ChatMessage(platform=platform, room=room, sender=sender, text=body,
                                                       event_id=f"$m{next(_events)}"))
        return "\n".join(json.loads(r.payload)["text"] for r in handled.rows)

    def run_every_output_path(self) -> None:
        for m in MARKS:
            lat, k = LAT[m], m.lower()
            r = self.say(J_L, ALICE, f'!op log boarding vessel="zqship{k}" at={lat},-118.27 start=+1h end=2h '
                                     f'mark={m} note="zqnote{k}" contact="zqcontact{k}"')
            self.refs[m]["op"] = r.split()[0]
            # Overlapping, so a conflict of marking m; a little off, so its place is not the marked op's.
            r = self.say(J_L, BOB, f"!op log patrol at={lat + 0.003},-118.27 radius=1km start=+1h end=2h")
            self.refs[m]["cf"] = next(w for w in r.replace(",", " ").split() if w.startswith("CF-"))
            self.refs[m]["op2"] = r.split()[0]
            r = self.say(J_L, ALICE, f'!target nominate "zqtship{k}" priority=high eta=+3h reason="zqreason{k}" '
                                     f"mark={m}")
            self.refs[m]["tgt"] = r.split()[0]
        # Command replies, from every joint room, for every reader.
        for room in (J_U, J_F, J_L, J_H):
            for who in READERS:
                for body in ["!op list all", "!target list all", "!conflicts all", "!zone", "!brief now",
                             *[f"!op show {self.refs[m]['op']}" for m in MARKS],
                             *[f"!target show {self.refs[m]['tgt']}" for m in MARKS]]:
                    self.replies[(room, who, body)] = self.say(room, who, body)
        # Escalation of what nobody acknowledged, to the district's rooms.
        self.clock.advance(minutes=20)
        with self.parts.db.session() as s:
            self.parts.engine.deconfliction.escalate(s, self.clock(), timedelta(minutes=15))
        # Three hours on, nobody closed the operations: nudges in the joint rooms, each under its marking.
        self.clock.advance(hours=3, minutes=15)
        assert nudge_overdue(self.parts.db, self.parts.directory, self.clock(), self.parts.engine.rules.max_operation)
        # Supervisors resolve with a note (told to the other watch rooms), then operations are cancelled.
        for m in MARKS:
            self.say(W_L, SAM, f'!conflicts resolve {self.refs[m]["cf"]} joint note="zqresnote{m.lower()}"')
        for room in (J_U, J_H, J_L):
            self.say(room, PAT, "!conflicts all")
        for m in MARKS:
            self.say(J_L, ALICE, f'!op cancel {self.refs[m]["op"]} reason="zqcancel{m.lower()}"')
        # Briefings built and rendered for every clearance, as the scheduler and `watchfloor brief` do.
        zone = get_zone("LALB")
        with self.parts.db.session() as s:
            for level in CLEARANCE_LEVELS:
                for show in (True, False):
                    data = build_briefing(s, self.parts.directory, zone, self.clock() - timedelta(minutes=30),
                                          level, show_withheld=show)
                    self.briefings.append((level, show, render("briefing.j2", **data).to_dict()))
        # Bridge relays, including a marking hidden behind a zero-width space and formatting.
        bridge = Bridge(self.parts)
        for n, body in enumerate(["[LES] zqbridgeles", "[FOUO] zqbridgefouo", "\u200b[les] zqbridgeles",
                                  "*[LES]* zqbridgeles", "  [ FOUO ] zqbridgefouo", "hello zqbridgeunclass"]):
            bridge.relay(ChatMessage(platform="matrix", room=J_L, sender=ALICE, text=body, event_id=f"$b{n}"))

    def outbox(self) -> list[OutboxRow]:
        with self.parts.db.session() as s:
            return list(s.exec(select(OutboxRow).order_by(OutboxRow.id)).all())


def _rendered(payload: dict) -> str:
    return "\n".join([payload.get("text", ""), payload.get("html", ""), json.dumps(payload.get("blocks", []))]).lower()


def _leaks(rendered: str, allowed) -> list[str]:
    return [f"{m}:{t}" for m in MARKS if m not in allowed for t in tokens(m) if t in rendered]


def test_no_detail_above_clearance_in_any_message(world):
    directory = world.parts.directory
    checked = 0
    problems = []
    for row in world.outbox():
        payload = json.loads(row.payload)
        reader = directory.sender(payload["user"]).clearance if row.kind == "reply" and payload.get("user") else None
        variants = payload.get("by_clearance") or {None: payload}
        for key, variant in variants.items():
            room_clearance = directory.room(row.room).clearance if key is None else \
                next(level for level in CLEARANCE_LEVELS if clearance_key(level) == key)
            allowed = {m for m in MARKS if may_show(m, room_clearance, reader)}
            found = _leaks(_rendered(variant), allowed)
            if found:
                problems.append((row.room, row.kind, payload.get("user"), found, variant.get("text", "")[:300]))
            checked += 1
    assert checked > 200
    assert not problems, problems[:5]


def test_positive_controls_details_do_reach_cleared_rooms(world):
    # Without these, a bot that showed nothing at all would pass the leak test.
    les_op = world.refs["LES"]["op"]
    assert "zqnoteles" in world.replies[(J_L, ALICE, f"!op show {les_op}")].lower()
    assert "zqreasonfouo" in world.replies[(J_F, BOB, f"!target show {world.refs['FOUO']['tgt']}")].lower()
    assert "zqnoteunclass" in world.replies[(J_U, PAT, f"!op show {world.refs['UNCLASS']['op']}")].lower()
    relays = [(row.room, _rendered(json.loads(row.payload))) for row in world.outbox() if row.kind == "relay"]
    assert any(room == J_F and "zqbridgefouo" in t for room, t in relays)
    assert any(room == J_U and "zqbridgeunclass" in t for room, t in relays)
    assert any(room == D_L and kind == "escalation" and "zqcontactles" in _rendered(p)
               for room, kind, p in ((r.room, r.kind, json.loads(r.payload)) for r in world.outbox()))
    nudged = [(r.room, _rendered(json.loads(r.payload))) for r in world.outbox() if "overdue" in r.payload]
    assert any(room == J_L and "zqcontactles" in t for room, t in nudged)
    assert any(room == J_U and "zqcontactunclass" in t for room, t in nudged)


def test_withheld_stub_only_where_config_allows(world):
    les_op = world.refs["LES"]["op"]
    listing = world.replies[(J_U, ALICE, "!op list all")]
    assert f"{les_op} (LES, details withheld)" in listing
    for who in READERS:
        hidden = world.replies[(J_H, who, "!op list all")] + world.replies[(J_H, who, "!target list all")] + \
            world.replies[(J_H, who, "!conflicts all")] + world.replies[(J_H, who, "!brief now")]
        assert "withheld" not in hidden.lower(), hidden
        for m in ("FOUO", "LES"):
            for kind in ("op", "tgt", "cf"):
                assert f"{world.refs[m][kind]} " not in hidden + " ", (m, kind, hidden)
    for row in world.outbox():
        if row.room in (J_H, W_H):
            assert "withheld" not in _rendered(json.loads(row.payload)), (row.room, row.kind, row.payload[:300])


def test_reader_without_clearance_cannot_read_even_in_cleared_room(world):
    les_op, fouo_tgt = world.refs["LES"]["op"], world.refs["FOUO"]["tgt"]
    assert world.replies[(J_L, BOB, f"!op show {les_op}")] == f"⚠ id: unknown operation {les_op} in LALB"
    assert world.replies[(J_L, PAT, f"!target show {fouo_tgt}")] == f"⚠ id: unknown target {fouo_tgt} in LALB"
    assert "zqcontactles" not in world.replies[(J_L, BOB, "!op list all")].lower()
    assert "zqcontactles" in world.replies[(J_L, ALICE, "!op list all")].lower()


@pytest.mark.parametrize("room,sender,mark", [(J_L, PAT, "FOUO"), (J_L, BOB, "LES"), (J_F, ALICE, "LES"),
                                              (J_U, ALICE, "FOUO")])
def test_cannot_create_items_above_clearance(world, room, sender, mark):
    def count():
        with world.parts.db.session() as s:
            return s.execute(text("SELECT (SELECT count(*) FROM operation), (SELECT count(*) FROM target)")).one()

    before = count()
    r1 = world.say(room, sender, f"!op log patrol at=34.9,-118.2 start=+40h end=1h mark={mark}")
    r2 = world.say(room, sender, f'!target nominate "zqnew{mark}" mark={mark}')
    assert r1.startswith("⚠ mark: ") and r2.startswith("⚠ mark: "), (r1, r2)
    assert count() == before


def test_briefings_rendered_per_clearance_leak_nothing(world):
    assert len(world.briefings) == 6
    for level, show, rendered in world.briefings:
        allowed = {m.value for m in level}
        assert not _leaks(_rendered(rendered), allowed), (sorted(allowed), show)
        if not show:
            assert "withheld" not in _rendered(rendered)
    full = next(r for level, show, r in world.briefings if Marking.LES in level)
    assert "zqtshiples" in _rendered(full)


def test_withholding_in_listings_is_audited_once_per_listing(world):
    from watchfloor.storage.tables import AuditRow

    with world.parts.db.session() as s:
        rows = s.exec(select(AuditRow).where(AuditRow.action == "withhold")).all()
    pat_in_ju = [r for r in rows if r.actor == PAT and r.room == J_U and r.command == "!op list all"]
    assert len(pat_in_ju) == 1
    detail = json.loads(pat_in_ju[0].detail)
    assert set(detail["refs"]) == {world.refs["FOUO"]["op"], world.refs["LES"]["op"]}
    assert detail["reader_agency"] == "PD" and pat_in_ju[0].agency_code is None
    # Nothing withheld, nothing recorded: alice reading in the fully cleared room.
    assert not [r for r in rows if r.actor == ALICE and r.room == J_L]
