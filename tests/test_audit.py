"""The audit trail: every state change recorded, tampering found by `watchfloor audit verify`, concurrent appends.

The CLI runs as a separate process on the same database, as an auditor would run it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlmodel import select

from watchfloor.storage.tables import AuditRow
from tests.helpers import ConsoleUser, make_parts


ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    # The code under test, whichever checkout the installed entry point was made from.
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("watchfloor")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "watchfloor.bot.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env(), cwd=ROOT)


def scenario(db_url, clock):
    """A morning's work touching every kind of state change."""
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    assert alice.say("!op log boarding vessel=IMO9074729 at=33.74,-118.27 start=+1h end=2h").startswith("OP-1")
    assert "CF-1" in bob.say("!op log patrol at=33.741,-118.271 start=+1h end=2h")
    alice.say('!op update OP-1 note="pilot at 0600"')
    sam.say("!conflicts ack CF-1")
    sam.say('!conflicts resolve CF-1 joint note="together"')
    alice.say("!op log escort at=33.70,-118.20 start=+3h end=1h")
    alice.say('!op cancel OP-3 reason="weather"')
    alice.say('!op done OP-1 outcome="clean"')
    alice.say("!target nominate IMO9074729 priority=high eta=+2h")   # raises a gap: nobody covers it
    bob.say("!target endorse TGT-1")
    alice.say("!target update TGT-1 priority=medium")
    sam.say("!target assign TGT-1 USCG")
    clock.advance(minutes=20)
    with parts.db.session() as s:
        parts.engine.deconfliction.escalate(s, clock(), timedelta(minutes=15))
    alice.say('!target close TGT-1 outcome="boarded"')                # closes the gap conflict
    alice.say("!brief now")
    return parts


def test_every_state_change_is_recorded(db_url, clock):
    parts = scenario(db_url, clock)
    with parts.db.session() as s:
        rows = s.exec(select(AuditRow).order_by(AuditRow.id)).all()
    actions = {r.action for r in rows}
    expected = {"op.log", "op.update", "op.cancel", "op.done", "target.nominate", "target.endorse",
                "target.update", "target.assign", "target.close", "conflict.raise", "conflict.close",
                "conflict.ack", "conflict.resolve", "conflict.escalate", "brief.now"}
    assert expected <= actions, expected - actions
    by_cmd = [r for r in rows if r.command]
    for r in by_cmd:
        assert r.at is not None and r.actor.startswith("console:") and r.room == "console:LALB" and r.zone_code == "LALB"
    update = next(r for r in rows if r.action == "op.update")
    assert update.entity == "OP-1" and update.command.startswith("!op update OP-1")
    assert json.loads(update.detail)["note"] == ["None", "pilot at 0600"]
    resolve = next(r for r in rows if r.action == "conflict.resolve")
    assert resolve.actor == "console:sam" and json.loads(resolve.detail)["resolution"] == "joint"
    parts.db.dispose()
    ok = cli("audit", "verify", "--db", db_url)
    assert ok.returncode == 0 and f"intact: {len(rows)} records" in ok.stdout, ok.stdout + ok.stderr


def test_rejected_commands_leave_no_record(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    nobody = ConsoleUser(parts, "LALB", "carol")
    assert alice.say("!op log boarding at=95,0").startswith("⚠ at:")
    assert nobody.say("!op log boarding at=33.7,-118.2").startswith("⚠ permission:")
    with parts.db.session() as s:
        assert s.exec(select(AuditRow)).all() == []


def _ids(db_url) -> list[int]:
    from watchfloor.storage.db import Database

    db = Database(db_url)
    with db.session() as s:
        ids = [r for r in s.exec(select(AuditRow.id).order_by(AuditRow.id)).all()]
    db.engine.dispose()
    return ids


def _verify(db_url: str):
    from watchfloor.storage.audit import verify
    from watchfloor.storage.db import Database

    db = Database(db_url)
    with db.session() as s:
        result = verify(s)
    db.engine.dispose()
    return result


def _sql(db_url: str, statement: str, **params) -> None:
    from watchfloor.storage.db import Database

    db = Database(db_url)
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)
    db.engine.dispose()


def _row(db_url: str, i: int) -> dict:
    from watchfloor.storage.db import Database

    db = Database(db_url)
    with db.engine.connect() as conn:
        row = dict(conn.execute(text("SELECT * FROM audit WHERE id = :i"), {"i": i}).mappings().one())
    db.engine.dispose()
    return row


def _restore(db_url: str, row: dict) -> None:
    cols = ", ".join(row)
    _sql(db_url, "DELETE FROM audit WHERE id = :id", id=row["id"])
    _sql(db_url, f"INSERT INTO audit ({cols}) VALUES ({', '.join(':' + c for c in row)})", **row)


def test_verify_names_the_tampered_record(db_url, clock):
    """Each kind of tampering on one trail, put back after each: verify fails naming the record, then passes."""
    scenario(db_url, clock).db.dispose()
    ids = _ids(db_url)
    assert len(ids) > 10
    middle, last = ids[len(ids) // 2], ids[-1]
    tampering = [
        ("altered", middle, "UPDATE audit SET detail = :d WHERE id = :i", {"d": '{"note": "nothing happened"}'}),
        ("altered", ids[1], "UPDATE audit SET actor = 'console:mallory' WHERE id = :i", {}),
        ("altered", middle, "UPDATE audit SET at = at WHERE id = :i AND 1 = 0", None),  # a no-op: stays intact
        ("removed", middle, "DELETE FROM audit WHERE id = :i", {}),
        ("removed", last, "DELETE FROM audit WHERE id = :i", {}),
    ]
    for word, victim, statement, params in tampering:
        saved = _row(db_url, victim)
        _sql(db_url, statement, i=victim, **(params or {}))
        if params is None:
            assert _verify(db_url)[1] is None
            continue
        out = cli("audit", "verify", "--db", db_url)
        assert out.returncode != 0, (word, victim, out.stdout)
        assert f"record {victim}" in out.stdout and word in out.stdout, (word, victim, out.stdout)
        _restore(db_url, saved)
        assert _verify(db_url) == (len(ids), None)  # the failure really was about that one record


def test_audit_show_prints_the_zone_trail(sqlite_url, clock):
    scenario(sqlite_url, clock).db.dispose()
    out = cli("audit", "show", "--zone", "LALB", "--db", sqlite_url, "--since", "2026-12-01T00:00")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("console:sam" in ln and "conflict.resolve" in ln and "CF-1" in ln and "PST" in ln for ln in lines)
    assert any("op.log" in ln and "OP-1" in ln and "[CBP]" in ln for ln in lines)
    later = cli("audit", "show", "--zone", "LALB", "--db", sqlite_url, "--since", "2026-12-02T00:00")
    assert later.returncode == 0 and later.stdout.strip() == ""
    other = cli("audit", "show", "--zone", "NOLA", "--db", sqlite_url)
    assert other.returncode == 0 and "OP-1" not in other.stdout


_APPENDER = r"""
import sys
from datetime import UTC, datetime
from watchfloor.storage.audit import append
from watchfloor.storage.db import Database
db = Database(sys.argv[1])
for n in range(int(sys.argv[3])):
    with db.session() as s:
        append(s, at=datetime.now(UTC), actor=f"proc:{sys.argv[2]}", action="test.append", entity=str(n),
               zone="LALB", detail={"n": n})
db.engine.dispose()
"""


def test_concurrent_appends_keep_a_valid_chain_on_postgresql(pg_url):
    from watchfloor.storage.db import Database

    Database(pg_url).upgrade()
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, pg_url, str(k), "150"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT) for k in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    out = cli("audit", "verify", "--db", pg_url)
    assert out.returncode == 0 and "intact: 300 records" in out.stdout, out.stdout + out.stderr
