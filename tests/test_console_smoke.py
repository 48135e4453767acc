"""End to end through the console: two agencies sharing one database, on SQLite and PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys

from sqlmodel import func, select

from watchfloor.storage.tables import OperationRow
from tests.helpers import ConsoleUser, make_parts


def test_two_agencies_share_operations_and_see_conflicts(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    reply = alice.say('!op log boarding vessel=IMO9074729 at=33.74,-118.27 start=2026-12-01T14:00 end=2h '
                      'contact="CBP desk"')
    assert reply.startswith("OP-1 logged")
    assert "14:00 PST" in reply
    listing = bob.say("!op list all")
    assert "OP-1 CBP boarding" in listing
    clash = bob.say("!op log patrol at=33.741,-118.271 start=2026-12-01T15:00 end=2026-12-01T17:00")
    assert "OP-2 logged" in clash and "CF-1" in clash


def test_bad_input_names_the_field_and_stores_nothing(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    cases = {
        "!op log patrol at=95,0": "at: latitude",
        "!op log boarding vessel=IMO9074728": "vessel: IMO9074728 has a wrong check digit",
        "!op log boarding vessel=12345": "vessel: MMSI must be 9 digits",
        "!op log patrol at=1,1 start=2026-12-01T10:00 end=2026-12-01T09:00": "end: must be after start",
        "!op log flying at=1,1": "type: unknown type",
        "!op log patrol at=1,1 colour=red": "colour: unknown key",
        "!op show OP-42": "id: unknown operation OP-42",
    }
    for text, expected in cases.items():
        reply = alice.say(text)
        assert expected in reply, (text, reply)
        assert "\n" not in reply.strip()
    with parts.db.session() as s:
        assert s.exec(select(func.count(OperationRow.id))).one() == 0


def test_console_subprocess_reads_piped_input(tmp_path):
    db = f"sqlite:///{tmp_path / 'wf.db'}"
    env = {**os.environ, "WATCHFLOOR_DB_URL": db}
    script = "!op log patrol at=33.74,-118.27 start=+1h end=2h\n!op list all\n"
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "console", "--zone", "LALB", "--user", "alice",
                          "--agency", "CBP"], input=script, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "OP-1 logged" in out.stdout and "OP-1 CBP patrol" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "console", "--zone", "NOPE", "--user", "a"],
                         input="", capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "zone" in bad.stderr
