"""How long each `watchfloor` command takes to start and finish, as a ratio to what Python takes to import the
libraries such a command must load, measured in the same run.

Goal (the contract's "Packaging", issue 25): a command that opens the database or reads the config within 1.2× of
`python -c "import sqlmodel, pydantic_settings, jinja2"`; `--help` and `zones` within 0.6× of it. Each round runs
every arm once, in turn, so a busy moment hits all arms alike; the figure is each arm's median ÷ the floor's
median. (`watchfloor run` is excluded: it starts adapters and serves until stopped.)

Every arm runs with its bytecode cached, as an installed package has it: the runs share a fresh
PYTHONPYCACHEPREFIX (filled by the warm-up round), whatever PYTHONDONTWRITEBYTECODE the shell has.

    python bench/bench_startup.py [--runs 10]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = "floor: import sqlmodel, pydantic_settings, jinja2"
QUICK = ("watchfloor --help", "watchfloor zones")  # neither opens a database nor reads a config
LIB_TYPER = "  floor + typer (the CLI library)"
LIB_TABLES = "  floor + typer + declaring our 17 SQLModel tables"
LIB_MAPPED = "  floor + typer + tables + SQLAlchemy mapper set-up"
GOAL_QUICK, GOAL_DB = 0.6, 1.2


def commands(db: str) -> dict[str, list[str]]:
    exe = shutil.which("watchfloor") or "watchfloor"
    example = str(ROOT / "watchfloor.example.toml")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        FLOOR: [sys.executable, "-c", "import sqlmodel, pydantic_settings, jinja2"],
        # What stands between the floor and any database command, library by library (no goal: explanation).
        LIB_TYPER: [sys.executable, "-c", "import sqlmodel, pydantic_settings, jinja2, typer"],
        LIB_TABLES: [sys.executable, "-c", "import sqlmodel, pydantic_settings, jinja2, typer; "
                                           "import watchfloor.storage.tables"],
        LIB_MAPPED: [sys.executable, "-c", "import sqlmodel, pydantic_settings, jinja2, typer; "
                                           "import watchfloor.storage.tables; "
                                           "import sqlalchemy.orm; sqlalchemy.orm.configure_mappers()"],
        "watchfloor --help": [exe, "--help"],
        "watchfloor zones": [exe, "zones"],
        "watchfloor brief --zone LALB": [exe, "brief", "--zone", "LALB", "--db", db],
        "watchfloor conflicts scan --zone LALB": [exe, "conflicts", "scan", "--zone", "LALB", "--db", db],
        "watchfloor console (one command)": [exe, "console", "--zone", "LALB", "--user", "bench", "--agency",
                                             "CBP", "--db", db],
        "watchfloor config check": [exe, "config", "check", example],
        "watchfloor audit verify": [exe, "audit", "verify", "--db", db],
        "watchfloor db upgrade": [exe, "db", "upgrade", "--db", db],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/bench.db"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update({"XDG_CACHE_HOME": f"{tmp}/cache", "HOME": tmp, "PYTHONPYCACHEPREFIX": f"{tmp}/pycache"})
        env.pop("WATCHFLOOR_DB_URL", None)
        cmds = commands(db)
        # First use creates and migrates the database, fills the template and bytecode caches: not measured.
        for _ in range(2):
            for argv in cmds.values():
                subprocess.run(argv, input="!op list\n", capture_output=True, text=True, env=env, check=False)
        wall: dict[str, list[float]] = {name: [] for name in cmds}
        cpu: dict[str, list[float]] = {name: [] for name in cmds}
        loads = []
        for _ in range(args.runs):
            for name, argv in cmds.items():
                w, c, code, err = _timed(argv, env)
                wall[name].append(w)
                cpu[name].append(c)
                if code != 0:
                    print(f"{name}: exit {code}: {err.strip()[:200]}", file=sys.stderr)
            loads.append(os.getloadavg()[0])
    floor_wall, floor_cpu = statistics.median(wall[FLOOR]), statistics.median(cpu[FLOOR])
    print(f"runs: {args.runs}; load average {min(loads):.1f}–{max(loads):.1f} (2 cores). Wall time is what a user "
          "waits; CPU time (user + system of the process) is what the command costs, steadier on a busy machine.")
    print(f"{'command':<52} {'wall':>7} {'÷ floor':>8} {'CPU':>7} {'÷ floor':>8}  goal")
    over = []
    for name in cmds:
        mw, mc = statistics.median(wall[name]), statistics.median(cpu[name])
        rw, rc = mw / floor_wall, mc / floor_cpu
        goal = GOAL_QUICK if name in QUICK else GOAL_DB if name.startswith("watchfloor") else None
        verdict = "" if goal is None else f"≤ {goal:.1f}×" + ("" if max(rw, rc) <= goal else "  OVER")
        if goal is not None and max(rw, rc) > goal:
            over.append(name)
        print(f"{name:<52} {mw:>6.3f}s {rw:>7.2f}× {mc:>6.3f}s {rc:>7.2f}×  {verdict}")
    print("all within their goals" if not over else f"over their goals: {', '.join(over)}")
    return 0


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Wall time and CPU time (user + system, from the child's own resource usage) of one run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    proc.stdin.write("!op list\n")
    proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    del out
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, proc.returncode, err


if __name__ == "__main__":
    raise SystemExit(main())
