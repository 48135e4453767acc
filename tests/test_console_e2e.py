"""The console room as users run it: separate processes sharing one database, SQLite and PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

CLI = [sys.executable, "-m", "watchfloor.bot.cli"]
ALICE = ["console", "--zone", "LALB", "--user", "alice", "--agency", "CBP"]
BOB = ["console", "--zone", "LALB", "--user", "bob", "--agency", "USCG"]
SAM = ["console", "--zone", "LALB", "--user", "sam", "--agency", "CBP", "--role", "supervisor"]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "WATCHFLOOR_DB_URL"}


def console(db_url: str, who: list[str], *lines: str) -> subprocess.CompletedProcess:
    out = subprocess.run([*CLI, *who, "--db", db_url], input="".join(f"{x}\n" for x in lines),
                         capture_output=True, text=True, timeout=180, env=env())
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    return out


def _tomorrow_in_lalb() -> tuple[str, str, str]:
    """The consoles run on the real clock: tomorrow in Los Angeles, as typed (2026-12-02), as shown (Wed 02 Dec),
    and the zone's abbreviation that day (PST or PDT)."""
    la = ZoneInfo("America/Los_Angeles")
    day = datetime.now(la).date() + timedelta(days=1)
    return day.isoformat(), f"{day:%a %d %b}", datetime.combine(day, time(14), la).strftime("%Z")


def test_two_agencies_one_database_conflict_alert_and_supervisor(db_url):
    day, shown, tz = _tomorrow_in_lalb()
    # alice stays in the room while bob works, as two people at two terminals would
    alice = subprocess.Popen([*CLI, *ALICE, "--db", db_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env())
    try:
        alice.stdin.write(f'!op log boarding vessel=IMO9074729 at=33.74,-118.27 start={day}T14:00 end=2h '
                          'contact="CBP desk"\n')
        alice.stdin.flush()
        first = alice.stdout.readline()
        assert first.startswith("OP-1 logged: OP-1 CBP boarding · IMO9074729 · 33.7400,-118.2700 ±500 m · "
                                f"{shown} 14:00 {tz} – 16:00 {tz} · contact CBP desk"), first
        bob = console(db_url, BOB, "!op list all",
                      f"!op log patrol at=33.741,-118.271 radius=1nm start={day}T15:00 end={day}T17:00",
                      "!conflicts", "!conflicts ack CF-1")
        assert "OP-1 CBP boarding" in bob.stdout
        assert "OP-2 logged" in bob.stdout and "CF-1" in bob.stdout
        assert bob.stdout.splitlines()[-1].startswith("⚠ permission: only a watch supervisor")  # ack
        alerts = [line for line in bob.stdout.splitlines() if line.startswith("ALERT | ")]
        assert alerts and "ALERT | 🚨 ALERT LALB: 1 new conflict" in alerts
        alice.stdin.write("!zone\n")
        alice.stdin.close()
        rest = alice.stdout.read()
        alice.wait(60)
    finally:
        if alice.poll() is None:
            alice.kill()
    assert alice.returncode == 0
    assert "ALERT | 🚨 ALERT LALB: 1 new conflict" in rest  # bob's conflict reached alice's terminal too
    # a supervisor acks and resolves
    sam = console(db_url, SAM, "!conflicts ack CF-1", '!conflicts resolve CF-1 joint note="board together"',
                  "!conflicts", "!conflicts all")
    lines = sam.stdout
    assert "CF-1" in lines and "CF-1 resolved: joint" in lines
    assert "No open conflicts." in lines


def test_reader_without_agency_and_bad_lines(sqlite_url):
    out = console(sqlite_url, ["console", "--zone", "LALB", "--user", "walt"],
                  "!op log patrol at=33.7,-118.2", "", "hello everyone", "!op list", "!nonsense", "!opp list", "!op log")
    lines = out.stdout.splitlines()
    assert lines[0].startswith("⚠ permission: you are not a member of any agency")
    assert "Operations in LALB" in out.stdout
    assert "⚠ command: unknown command 'opp'; did you mean !op?" in lines  # a typo gets a hint
    assert "nonsense" not in out.stdout  # talk that starts with "!" is not answered
    assert "⚠ permission:" in lines[-1]


@pytest.mark.parametrize("args,reason", [
    (["console", "--zone", "NOPE", "--user", "a"], "zone: unknown zone 'NOPE'"),
    (["console", "--zone", "LALB", "--user", "a", "--colour", "red"], "No such option"),
])
def test_bad_arguments_exit_2_with_a_reason(sqlite_url, args, reason):
    out = subprocess.run([*CLI, *args, "--db", sqlite_url], input="", capture_output=True, text=True,
                         timeout=120, env=env())
    assert out.returncode == 2
    assert reason in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("args,reason", [
    (["--role", "admiral"], "role: 'admiral' is not member or supervisor"),
    (["--user", "a b"], "user: use letters"),
    (["--agency", "C B P"], "agency: use letters"),
])
def test_bad_values_exit_2_naming_the_flag(sqlite_url, args, reason):
    from typer.testing import CliRunner

    from watchfloor.bot.cli import app

    base = {"--zone": "LALB", "--user": "a", "--db": sqlite_url}
    base[args[0]] = args[1]
    out = CliRunner().invoke(app, ["console", *[x for kv in base.items() for x in kv]], input="")
    assert out.exit_code == 2 and reason in out.output, out.output
