"""How long each `watchfloor` command takes to start and finish, beside a bare `python -c pass`.

Goal (issue 12): every CLI command under 0.5 s, median of 10 runs on an idle machine (`watchfloor run` excluded:
it starts adapters and may take longer). Each round runs every command once, in turn, so a busy moment hits all
arms alike.

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
GOAL = 0.5


def commands(db: str) -> dict[str, list[str]]:
    exe = shutil.which("watchfloor") or "watchfloor"
    example = str(ROOT / "watchfloor.example.toml")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        # the floor of any command that opens the database: the libraries every such command needs
        "floor: import sqlmodel, pydantic_settings, jinja2": [sys.executable, "-c",
                                                             "import sqlmodel, pydantic_settings, jinja2"],
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
        env = {**os.environ, "XDG_CACHE_HOME": f"{tmp}/cache", "HOME": tmp}
        cmds = commands(db)
        # First use creates and migrates the database and fills the template cache: not what is measured.
        for argv in cmds.values():
            subprocess.run(argv, input="!op list\n", capture_output=True, text=True, env=env, check=False)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            for name, argv in cmds.items():
                t0 = time.perf_counter()
                out = subprocess.run(argv, input="!op list\n", capture_output=True, text=True, env=env)
                times[name].append(time.perf_counter() - t0)
                if out.returncode not in (0,):
                    print(f"{name}: exit {out.returncode}: {out.stderr.strip()[:200]}", file=sys.stderr)
    bare = statistics.median(times["python -c pass"])
    print(f"{'command':<52} {'median':>8} {'÷ bare':>7}  (runs: {args.runs}, goal < {GOAL:.1f} s)")
    worst = 0.0
    for name, ts in times.items():
        med = statistics.median(ts)
        command = name.startswith("watchfloor")
        if command:
            worst = max(worst, med)
        print(f"{name:<52} {med:>7.3f}s {med / bare:>6.1f}×{'  OVER' if med >= GOAL and command else ''}")
    print(f"slowest command: {worst:.3f} s ({'within' if worst < GOAL else 'over'} the {GOAL} s goal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
