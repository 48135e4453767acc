"""`watchfloor demo`: a fresh database filled with a day in LALB and NY, then explored in the console room."""
from __future__ import annotations

import subprocess
import sys

from watchfloor.bot.cli.demo import seed
from tests.helpers import make_parts


def _cli(*args: str, input: str = "", env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", *args], input=input, capture_output=True, text=True,
                          timeout=180, env=env)


def test_demo_then_a_console_session_sees_operations_the_conflict_and_the_gap(tmp_path):
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    out = _cli("demo", "--db", db)
    assert out.returncode == 0, out.stderr
    assert "13 operations and 3 targets in LALB and NY; 4 open conflicts" in out.stdout
    assert f"watchfloor console --zone LALB --user sam --agency USCG --role supervisor --db {db}" in out.stdout

    lalb = _cli("console", "--zone", "LALB", "--user", "sam", "--agency", "USCG", "--role", "supervisor",
                "--db", db, input="!op list\n!conflicts\n!conflicts ack CF-2\n!watch\n")
    assert lalb.returncode == 0, lalb.stderr
    text = lalb.stdout
    # The morning's two operations nobody closed are listed overdue (issue 25) beside the five to come.
    assert "Operations in LALB (live): 7 operations" in text
    assert [line.split()[0] for line in text.splitlines() if "⏰ overdue" in line] == ["OP-2", "OP-3"]
    assert "OP-5 CBP boarding · IMO9312341" in text and "OP-6 USCG patrol" in text
    assert "CF-2 overlap" in text
    assert 'CF-3 gap (priority arrival, no cover)' in text and '"OCEAN PEARL"' in text
    assert "CF-1" not in text.split("Conflicts in LALB")[1].split("CF-2")[0]  # the morning's is resolved
    assert "CF-2 acknowledged — owner sam" in text
    on_watch = text.split("On watch in LALB")[1]             # the demo's watch: alerts call them by name
    assert "• CBP: sofia until" in on_watch and "• USCG: sam until" in on_watch

    # Yesterday's finished boarding is in the briefing's "Yesterday", marked done this morning or not (issue 25).
    brief = _cli("brief", "--zone", "LALB", "--db", db)
    assert "• done: OP-1 CBP boarding · IMO9074729" in brief.stdout.split("Yesterday", 1)[1], brief.stdout

    # PORT is not cleared for LES: HSI's surveillance shows only that it exists
    port = _cli("console", "--zone", "LALB", "--user", "carlos", "--agency", "PORT", "--db", db,
                input="!op list\n")
    assert "OP-8 (LES, details withheld)" in port.stdout

    ny = _cli("console", "--zone", "NY", "--user", "carla", "--agency", "CBP", "--db", db,
              input="!conflicts\n!op update OP-11 start=+20h\n!watch\n")
    assert "CF-4 same-vessel" in ny.stdout and "CF-5 gap" in ny.stdout and "endorsed by CBP, HSI" in ny.stdout
    assert "Closed: CF-4" in ny.stdout
    assert "• USCG: nora until" in ny.stdout.split("On watch in NY")[1]


def test_demo_refuses_a_database_that_already_has_operations(tmp_path):
    db = f"sqlite:///{tmp_path / 'used.db'}"
    used = _cli("console", "--zone", "LALB", "--user", "alice", "--agency", "CBP", "--db", db,
                input="!op log patrol at=33.74,-118.27 start=+1h end=2h\n")
    assert used.returncode == 0
    out = _cli("demo", "--db", db)
    assert out.returncode == 1
    assert "already has 1 operation;" in out.stderr and "Traceback" not in out.stderr


def test_the_demo_day_is_the_same_on_postgresql(pg_url):
    parts = make_parts(pg_url)
    result = seed(parts)
    parts.db.dispose()
    assert (result.operations, result.targets) == (13, 3)
    assert result.open_conflicts == ["CF-2 LALB overlap", "CF-3 LALB gap", "CF-4 NY same-vessel", "CF-5 NY gap"]
