"""Who may do what: every entry of `authz.RULES` against every kind of sender, through the real engine.

Each case sets up a fresh operation, target and conflict owned by CBP, then one sender runs one command from a
Matrix room. A refusal must be one line naming `permission` and must leave the database exactly as it was.
"""
from __future__ import annotations

import itertools
import json

import pytest
from sqlalchemy import text

from watchfloor.commands.authz import RULES, Need
from watchfloor.commands.message import ChatMessage
from tests.helpers import make_parts

ROOM = "matrix:!joint:localhost"
SENDERS = {
    "nobody": "matrix:@stranger:localhost",          # in no agency
    "owner": "matrix:@alice:localhost",              # member of CBP, which owns the items
    "other": "matrix:@bob:localhost",                # member of USCG
    "supervisor": "matrix:@sue:localhost",           # USCG supervisor: may act on any agency's items in the zone
}
# One command per RULES entry; {op}, {tgt}, {cf}, {mmsi} are filled per case.
COMMANDS = {
    ("op", "log"): "!op log patrol at={lat},-118.27 start=+30h end=1h",
    ("op", "list"): "!op list",
    ("op", "show"): "!op show {op}",
    ("op", "update"): '!op update {op} note="moved"',
    ("op", "cancel"): '!op cancel {op} reason="weather"',
    ("op", "done"): '!op done {op} outcome="clean"',
    ("target", "nominate"): "!target nominate {mmsi} priority=low",
    ("target", "endorse"): "!target endorse {tgt}",
    ("target", "update"): "!target update {tgt} priority=low",
    ("target", "assign"): "!target assign {tgt} USCG",
    ("target", "close"): '!target close {tgt} outcome="boarded"',
    ("target", "list"): "!target list",
    ("target", "show"): "!target show {tgt}",
    ("conflicts", "list"): "!conflicts",
    ("conflicts", "all"): "!conflicts all",
    ("conflicts", "ack"): "!conflicts ack {cf}",
    ("conflicts", "resolve"): "!conflicts resolve {cf} joint",
    ("conflicts", "snooze"): "!conflicts snooze {cf} 1h",
    ("watch", None): "!watch",
    ("watch", "list"): "!watch list",
    ("watch", "on"): "!watch on until=+1h",
    ("watch", "off"): "!watch off",
    ("handover", None): "!handover",
    ("handover", "now"): "!handover now",
    ("brief", "now"): "!brief now",
    ("brief", None): "!brief",
    ("zone", None): "!zone",
    ("help", None): "!help",
    ("vessel", None): "!vessel {mmsi}",
    ("arrivals", None): "!arrivals 96h",
    ("cop", None): "!cop revoke",  # `!cop` itself needs [service] port and base_url, unset here
}
ALLOWED = {
    Need.ANYONE: {"nobody", "owner", "other", "supervisor"},
    Need.MEMBER: {"owner", "other", "supervisor"},
    Need.OWNER_OR_SUPERVISOR: {"owner", "supervisor"},
    Need.SUPERVISOR: {"supervisor"},
}
_events = itertools.count(1)
_case = itertools.count(1)


def test_every_rule_has_a_case():
    assert set(COMMANDS) == set(RULES)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('authz') / 'authz.db'}"
    p = make_parts(
        url,
        zone=[{"code": "LALB", "joint_rooms": [ROOM], "watch_rooms": ["matrix:!watch:localhost"]}],
        room=[{"id": ROOM, "clearance": ["UNCLASS", "FOUO"]}],
        agency=[{"code": "CBP", "members": [SENDERS["owner"]], "clearance": ["UNCLASS", "FOUO"]},
                {"code": "USCG", "members": [SENDERS["other"]], "supervisors": [SENDERS["supervisor"]],
                 "clearance": ["UNCLASS", "FOUO"]}],
    )
    yield p
    p.db.dispose()


def say(parts, sender: str, body: str) -> str:
    handled = parts.engine.handle(ChatMessage(platform="matrix", room=ROOM, sender=sender, text=body,
                                              event_id=f"$authz{next(_events)}"))
    return "\n".join(json.loads(r.payload)["text"] for r in handled.rows)


def snapshot(parts) -> list:
    with parts.db.session() as s:
        return [list(s.execute(text(f"SELECT * FROM {t} ORDER BY id")).all())
                for t in ("operation", "target", "endorsement", "conflict")]


def setup_items(parts) -> dict[str, str]:
    """A CBP operation, a CBP target and an overlap conflict between CBP and USCG, far from earlier cases."""
    n = next(_case)
    lat = f"{33.0 + n * 0.05:.2f}"
    owner, other = SENDERS["owner"], SENDERS["other"]
    op = say(parts, owner, f"!op log boarding at={lat},-118.27 start=+2h end=1h").split()[0]
    cf_reply = say(parts, other, f"!op log patrol at={lat},-118.27 start=+2h end=1h")
    cf = next(w for w in cf_reply.replace(",", " ").split() if w.startswith("CF-"))
    tgt = say(parts, owner, f"!target nominate 3660{n:05d} priority=low").split()[0]
    assert op.startswith("OP-") and tgt.startswith("TGT-"), (op, tgt)
    return {"op": op, "tgt": tgt, "cf": cf, "mmsi": f"3670{n:05d}", "lat": f"{34.0 + n * 0.05:.2f}"}


READ_ONLY = {k for k, need in RULES.items() if need is Need.ANYONE}


@pytest.mark.parametrize("key", list(COMMANDS), ids=[f"{k[0]}-{k[1]}" for k in COMMANDS])
def test_permission_table(parts, key):
    items = setup_items(parts)
    fresh = True
    # Refusals first: they must change nothing, so they can share one set of items.
    for who in sorted(SENDERS, key=lambda w: w in ALLOWED[RULES[key]]):
        if who in ALLOWED[RULES[key]]:
            if not fresh and key not in READ_ONLY:
                items = setup_items(parts)
            fresh = False
            reply = say(parts, SENDERS[who], COMMANDS[key].format(**items))
            assert "permission:" not in reply and not reply.startswith("⚠"), (who, reply)
        else:
            before = snapshot(parts)
            reply = say(parts, SENDERS[who], COMMANDS[key].format(**items))
            assert reply.startswith("⚠ permission: ") and "\n" not in reply, (who, reply)
            assert snapshot(parts) == before, f"a refused command by {who} changed the database"
