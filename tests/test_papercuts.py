"""Small things a user notices (issue 25): counts read as English, an argument's mistake named, help that shows
options plainly and the files' columns, a demo that suggests a database it would take, an MMSI that says it is one.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from watchfloor.bot.cli import app
from watchfloor.commands.conflicts_scan import scan_and_list
from watchfloor.templates import plural
from tests.helpers import ConsoleUser, make_parts

HERE, NEAR = "at=33.74,-118.27", "at=33.741,-118.271"


@pytest.mark.calendar_free  # no dates
def test_plural_reads_as_english():
    assert plural(0, "open conflict") == "0 open conflicts"
    assert plural(1, "open conflict") == "1 open conflict"
    assert plural(2, "agency", "agencies") == "2 agencies"


def test_conflicts_scan_counts_in_english(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    assert scan_and_list(parts.engine, "LALB") == ["0 open conflicts"]
    alice.say(f"!op log boarding {HERE} start=+1h end=2h")
    bob.say(f"!op log patrol {NEAR} start=+1h end=2h")
    lines = scan_and_list(parts.engine, "LALB")
    assert lines[0].startswith("CF-1 overlap open") and lines[-1] == "1 open conflict"


def test_arrivals_names_what_is_wrong_with_its_argument(sqlite_url, clock):
    alice = ConsoleUser(make_parts(sqlite_url, clock), "LALB", "alice", "CBP")
    assert alice.say("!arrivals 96h extra") == "⚠ command: unexpected word 'extra'; usage: arrivals [24h|96h]"
    assert alice.say("!arrivals 12h") == "⚠ window: '12h' is not 24h or 96h; usage: arrivals [24h|96h]"
    assert alice.say("!arrivals 96h window=2d") == \
        "⚠ window: arrivals takes no key=value, only 24h or 96h; usage: arrivals [24h|96h]"


def test_an_mmsi_is_labelled_wherever_a_vessel_shows(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock)
    hank = ConsoleUser(parts, "LALB", "hank", "HSI")
    logged = hank.say(f"!op log surveillance vessel=366987654 {HERE} start=+1h end=2h")
    assert "· MMSI 366987654 ·" in logged
    assert "· MMSI 366987654 ·" in hank.say("!op list")
    assert "TGT-1 MMSI 366987654" in hank.say("!target nominate 366987654 eta=+5h")
    assert "· 366987654 ·" not in hank.say("!brief")
    assert hank.say("!vessel 366987654").startswith("MMSI 366987654 — not heard on AIS")


# --- the command line ------------------------------------------------------------------------------------------

COMMANDS = ["", "console", "run", "brief", "zones", "demo", "db upgrade", "import", "import ops", "import noa",
            "import ais", "conflicts scan", "config check", "audit verify", "audit show"]


@pytest.mark.calendar_free  # help texts: no dates
@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_options_plainly(name):
    out = CliRunner().invoke(app, [*name.split(), "--help"], terminal_width=100)
    assert out.exit_code == 0, out.output
    # A flag takes no value and a value says what it is: no `--help <bool>`, no `--db <str>`.
    assert not re.search(r"<(bool|str|int)>", out.output), out.output
    assert re.search(r"^\s*--help\s+Show this message", out.output, re.M), out.output
    if "--db" in out.output:
        assert "--db URL" in out.output
    # A command's line in its group's listing is whole: click cuts a long first sentence short with "...".
    assert "..." not in out.output.split("Commands:")[-1] if "Commands:" in out.output else True


@pytest.mark.calendar_free  # help texts: no dates
def test_import_help_names_the_columns_with_an_example_row():
    ops = CliRunner().invoke(app, ["import", "ops", "--help"], terminal_width=120).output
    assert "type,agency,vessel,at,radius,start,end,mark,note,contact" in ops
    assert re.search(r"^\s*boarding,CBP,IMO9074729,\"33\.74,-118\.27\",", ops, re.M), ops   # an example row
    assert "JSON Lines" in ops and "zone" in ops
    noa = CliRunner().invoke(app, ["import", "noa", "--help"], terminal_width=120).output
    assert "vessel_name,imo,mmsi,call_sign,flag,eta,last_port,cdc,persons,submitted" in noa
    assert re.search(r"^\s*OCEAN PEARL,IMO9356787,", noa, re.M), noa


def _cli(*args: str, input: str = "", cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", *args], input=input, capture_output=True,
                          text=True, timeout=180, cwd=cwd)


def test_the_demo_refusing_a_database_suggests_one_that_is_free(tmp_path):
    used = tmp_path / "demo.db"
    assert _cli("console", "--zone", "LALB", "--user", "alice", "--agency", "CBP", "--db", f"sqlite:///{used}",
                input="!op log patrol at=33.74,-118.27 start=+1h end=2h\n").returncode == 0
    (tmp_path / "demo-2.db").write_bytes(b"")                     # taken too
    out = _cli("demo", "--db", f"sqlite:///{used}")
    assert out.returncode == 1
    assert "already has 1 operation;" in out.stderr
    assert f"--db sqlite:///{tmp_path / 'demo-3.db'}" in out.stderr and "Traceback" not in out.stderr
    # In the current directory, with the default database: a relative name beside it.
    assert _cli("console", "--zone", "LALB", "--user", "alice", "--agency", "CBP", cwd=tmp_path,
                input="!op log patrol at=33.74,-118.27 start=+1h end=2h\n").returncode == 0
    out = _cli("demo", cwd=tmp_path)
    assert "(e.g. --db sqlite:///demo-3.db)" in out.stderr
