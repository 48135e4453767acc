"""Hostile input: 10,000 generated commands, mixing valid ones with garbage, through the real engine on SQLite.

No command may crash the engine or answer with a traceback; every rejection is one line `field: reason`; a
rejected command leaves every table exactly as it was (every row, every column), but for its claim on the message
id and its error reply.
"""
from __future__ import annotations

import json
import random
import re

import pytest
from sqlalchemy import text

from watchfloor.commands.message import ChatMessage
from tests.helpers import make_parts
from tests.test_rejected_commands import EVENT_TABLES, Snapshot

N_COMMANDS = 10_000
ROOM = "matrix:!fuzz:localhost"
SENDERS = ["matrix:@alice:localhost", "matrix:@sam:localhost", "matrix:@bob:localhost", "matrix:@nobody:localhost"]

HOSTILE = [
    "\x00", "\x07", "\x1b[31mred\x1b[0m", "\x7f", "\u0085", "\u202eevil\u202c", "\u2066x\u2069", "\u200b", "\ufeff",
    "ОР-1", "ТGT-1", "ІMO9074729", "IMO９０７４７２９", "３６６１２３４５６", "𝟑𝟔𝟔𝟏𝟐𝟑𝟒𝟓𝟔", "e\u0301", "🚢",
    "{{ 7*7 }}", "{{ config }}", "{% for x in range(99999999) %}x{% endfor %}", "{# c #}", "${7*7}", "%s%s%n",
    "'; DROP TABLE operation; --", "1 OR 1=1", "\" OR \"\"=\"", "OP-1; DELETE FROM target", "' UNION SELECT * FROM audit--",
    "<a href=javascript:alert(1)>x</a>", "<img src=x onerror=alert(1)>", "<script>alert(1)</script>", "&lt;b&gt;",
    "<!channel>", "<!here>", "<!everyone>", "@room", "@channel", "@here", "@everyone", "<@U123>", "*bold* _it_ `c`",
    "A" * 5000, "9" * 400, "-" * 50, "=", "==", "a=b=c", "\"unclosed", "\u201ccurly\u201d", "''", "\\", "\n", "\t",
    "1e309", "nan", "inf", "-0", "99999999999999999999", "2026-02-30T10:00", "2026-03-08T02:30", "+99999d", "0m",
]
TYPES = ["boarding", "inspection", "patrol", "escort", "surveillance", "security-zone", "dive", "exercise", "BOARDING"]
GOOD = {
    "vessel": ["IMO9074729", "366123456", '"SEA SPRITE"', "IMO9074728", "12345"],
    "at": ["33.74,-118.27", "33.741,-118.271", "95,0", "33.7,-200", "abc", "33.74;-118.27"],
    "radius": ["500m", "2km", "1nm", "0m", "999km", "-5m"],
    "start": ["+1h", "+30m", "14:00", "2026-12-01T14:00", "2026-12-01T22:00Z", "yesterday"],
    "end": ["2h", "90m", "2026-12-01T13:00", "+3h", "9999h"],
    "mark": ["UNCLASS", "FOUO", "LES", "SECRET", "les"],
    "note": ['"pilot boards 0600"', "x"], "contact": ['"CBP desk"'], "reason": ['"tip"'], "outcome": ['"clean"'],
    "eta": ["+6h", "+30h", "2026-12-02T06:00"], "priority": ["high", "medium", "low", "urgent"], "name": ['"EVER"'],
}


def hostile(rng: random.Random) -> str:
    s = rng.choice(HOSTILE)
    if rng.random() < 0.3:
        s = rng.choice(HOSTILE) + s + rng.choice(HOSTILE)
    return s


def value(rng: random.Random, key: str) -> str:
    if rng.random() < 0.6 and key in GOOD:
        return rng.choice(GOOD[key])
    v = hostile(rng)
    return f'"{v}"' if rng.random() < 0.5 and '"' not in v else v


def command(rng: random.Random) -> str:
    prefix = rng.choice(["!", "!", "/", "! ", ""])
    pick = rng.random()
    if pick < 0.05:
        return prefix + hostile(rng)
    ref = rng.choice(["OP-1", "OP-2", "op-3", "7", "OP-999999999999", "TGT-1", "TGT-2", "CF-1", "CF-2", hostile(rng)])
    shapes = [
        lambda: f"op log {rng.choice(TYPES + [hostile(rng)])}",
        lambda: f"op update {ref}", lambda: f"op cancel {ref}", lambda: f"op done {ref}",
        lambda: f"op show {ref}", lambda: f"op list {rng.choice(['', 'today', 'active', 'all', hostile(rng)])}",
        lambda: f"target nominate {value(rng, 'vessel')}", lambda: f"target endorse {ref}",
        lambda: f"target update {ref}", lambda: f"target assign {ref} {rng.choice(['USCG', 'CBP', hostile(rng)])}",
        lambda: f"target close {ref}", lambda: "target list", lambda: f"target show {ref}",
        lambda: "conflicts", lambda: f"conflicts ack {ref}",
        lambda: f"conflicts resolve {ref} {rng.choice(['joint', 'proceed', 'delay', 'cancel', hostile(rng)])}",
        lambda: "zone", lambda: f"help {rng.choice(['', 'op', hostile(rng)])}", lambda: hostile(rng),
    ]
    body = rng.choice(shapes)()
    keys = list(GOOD) + ["bogus", "type", "x" * 30]
    for _ in range(rng.randrange(0, 6)):
        k = rng.choice(keys)
        body += f" {k}={value(rng, k)}"
    if rng.random() < 0.1:
        body += " " + hostile(rng)
    return prefix + body


ONE_LINE_REJECTION = re.compile(r"^⚠ [a-z_]+: \S.*$")


@pytest.fixture
def parts(tmp_path):
    # tmpfs when available: 10,000 commited transactions on a disk-backed file would be slow, not more real.
    import tempfile
    from pathlib import Path

    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    d = Path(tempfile.mkdtemp(dir=base))
    p = make_parts(
        f"sqlite:///{d / 'fuzz.db'}",
        zone=[{"code": "LALB", "joint_rooms": [ROOM], "watch_rooms": ["matrix:!fuzzwatch:localhost"]}],
        room=[{"id": ROOM, "clearance": ["UNCLASS", "FOUO", "LES"]}],
        agency=[{"code": "CBP", "members": [SENDERS[0]], "supervisors": [SENDERS[1]],
                 "clearance": ["UNCLASS", "FOUO", "LES"]},
                {"code": "USCG", "members": [SENDERS[2]], "clearance": ["UNCLASS", "FOUO"]}],
    )
    yield p
    p.db.dispose()
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def event_rows(parts) -> tuple[int, int]:
    with parts.db.session() as s:
        return tuple(s.execute(text(
            "SELECT (SELECT count(*) FROM handled_event), (SELECT count(*) FROM outbox)")).one())


def test_ten_thousand_hostile_commands(parts, caplog):
    rng = random.Random(20261201)
    snapshot = Snapshot(parts.db)
    # The claim and the error reply every rejection writes are counted here, not compared: those tables grow by
    # one row per command, and reading them whole 10,000 times would be most of the test's time.
    # tests/test_rejected_commands.py checks them row by row.
    before, events_before = snapshot.take(skip=EVENT_TABLES), event_rows(parts)
    accepted = rejected = 0
    for n in range(N_COMMANDS):
        body = command(rng)
        handled = parts.engine.handle(ChatMessage(platform="matrix", room=ROOM, sender=rng.choice(SENDERS),
                                                  text=body, event_id=f"$fuzz{n}"))
        after, events_after = snapshot.take(skip=EVENT_TABLES), event_rows(parts)
        assert "something went wrong" not in (handled.error or ""), f"crash on {body!r}"
        for row in handled.rows:
            payload = json.loads(row.payload)
            assert "Traceback" not in payload["text"] and 'File "' not in payload["text"], body
        if handled.error is not None:
            rejected += 1
            reply = json.loads(handled.rows[0].payload)["text"]
            assert ONE_LINE_REJECTION.match(reply) and "\n" not in reply, (body, reply)
            changed = [t for t in before if before[t] != after[t]]
            assert changed == [], f"rejected {body!r} changed {changed}"
            assert len(handled.rows) == 1 and json.loads(handled.rows[0].payload)["reply_to"] == f"$fuzz{n}"
            assert events_after == (events_before[0] + 1, events_before[1] + 1), body
        elif handled.rows:
            accepted += 1
        before, events_before = after, events_after
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    # The mix really exercised both sides: a generator that only produced garbage would prove little.
    assert accepted > 500 and rejected > 3000, (accepted, rejected)
    with parts.db.session() as s:
        ops, targets, conflicts = s.execute(text(
            "SELECT (SELECT count(*) FROM operation), (SELECT count(*) FROM target), (SELECT count(*) FROM conflict)"
        )).one()
    assert ops > 3 and targets > 3 and conflicts > 0, (ops, targets, conflicts)
