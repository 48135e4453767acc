"""The `watchfloor` command line: every command has help; zones; exit codes."""
from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from watchfloor.bot.cli import app

CONTRACT = {"console", "run", "brief", "zones", "import ops", "conflicts scan", "db upgrade", "config check",
            "audit verify", "audit show", "demo"}


def commands(group, prefix: str = "") -> dict:
    out = {}
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # typer vendors its own click: duck-type the groups
            out.update(commands(cmd, f"{prefix}{name} "))
        else:
            out[f"{prefix}{name}"] = cmd
    return out


ALL = commands(typer.main.get_command(app))


def test_every_contract_command_exists():
    assert CONTRACT <= set(ALL), CONTRACT - set(ALL)


@pytest.mark.parametrize("name", sorted(ALL))
def test_help_works_on_every_command(name):
    out = CliRunner().invoke(app, [*name.split(), "--help"])
    assert out.exit_code == 0, out.output
    assert "Usage:" in out.output and ALL[name].help.split("\n")[0][:30] in " ".join(out.output.split())


def test_top_level_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for name in ("console", "zones", "import", "db", "audit"):
        assert name in out.stdout


def test_zones_lists_the_37_cotp_zones():
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "zones"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert len(lines) == 37
    codes = [line.split()[0] for line in lines]
    assert len(set(codes)) == 37 and {"LALB", "NY", "GUAM", "HON", "ANC", "SJ"} <= set(codes)
    lalb = next(line for line in lines if line.startswith("LALB "))
    assert "Los Angeles" in lalb and "America/Los_Angeles" in lalb


def test_unknown_command_and_flag_exit_2():
    runner = CliRunner()
    assert runner.invoke(app, ["frobnicate"]).exit_code == 2
    assert runner.invoke(app, ["zones", "--colour"]).exit_code == 2
    assert runner.invoke(app, ["brief", "--zone", "ATLANTIS"]).exit_code == 2


@pytest.mark.parametrize("argv", [["frobnicate"], ["zones", "--colour"], ["console", "--zone", "LALB"],
                                  ["console", "--zone", "ATLANTIS", "--user", "a"]])
def test_bad_arguments_exit_2_with_one_line_naming_the_problem(argv):
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", *argv], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert any(word in lines[0] for word in ("frobnicate", "--colour", "--user", "zone")), lines[0]
    assert "Traceback" not in out.stderr and "╭" not in out.stderr


DB_COMMANDS = [["brief", "--zone", "LALB"], ["audit", "verify"], ["db", "upgrade"], ["conflicts", "scan", "--zone",
               "LALB"], ["audit", "show", "--zone", "LALB"], ["demo"]]


@pytest.mark.parametrize("argv", DB_COMMANDS)
@pytest.mark.parametrize("url,code,says", [
    ("notaurl", 2, "is not a database URL"),
    ("foo://secretless/x", 2, "is not a database URL"),
    ("postgresql+psycopg://postgres:hunter22@127.0.0.1:1/test", 1, "Connection refused"),
    ("sqlite:////nonexistent-dir/x.db", 1, "unable to open database file"),
    ("postgresql+psycopg://postgres:hunter@22@127.0.0.1:5432/test", 1, "%40"),
])
def test_database_problems_are_one_line_without_the_password(argv, url, code, says):
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", *argv, "--db", url], capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == code, out.stderr[-600:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("db: ") and says in lines[0], out.stderr[-600:]
    assert "hunter" not in out.stderr + out.stdout and "22@" not in out.stderr
