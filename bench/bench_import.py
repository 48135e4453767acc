"""Time `watchfloor import ops` on 200,000 realistic rows in one zone (SQLite, and PostgreSQL if reachable).

Run: python bench/bench_import.py [--rows 200000]
Prints the row count, file size and wall time of each run, measured here, once.
"""
from __future__ import annotations

import argparse
from contextlib import ExitStack
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.postgres import temporary_database  # noqa: E402

AGENCIES = ["CBP", "USCG", "HSI", "PD", "PORT"]
TYPES = ["boarding", "inspection", "patrol", "escort", "surveillance", "security-zone", "dive", "exercise"]
LA = ZoneInfo("America/Los_Angeles")


def imo(rng: random.Random) -> str:
    d = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(5)]
    return "IMO" + "".join(map(str, d)) + str(sum(x * w for x, w in zip(d, range(7, 1, -1))) % 10)


def generate(path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    fleet = [imo(rng) for _ in range(3000)] + [str(rng.randint(366000000, 369999999)) for _ in range(1000)]
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    span_min = 4 * 365 * 24 * 60  # 2024-2027: history and plans
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["type", "agency", "vessel", "at", "radius", "start", "end", "mark", "note", "contact"])
        for i in range(n):
            # instants in UTC shown as zone wall time with its offset, so no row falls in a DST gap
            start = (t0 + timedelta(minutes=rng.randrange(span_min) // 15 * 15)).astimezone(LA)
            w.writerow([
                rng.choice(TYPES), rng.choice(AGENCIES), rng.choice(fleet) if rng.random() < 0.6 else "",
                # anywhere in the sector: the ports, anchorages, the channel and the approaches
                f"{33.35 + rng.random() * 0.70:.4f},{-118.95 + rng.random() * 1.0:.4f}",
                rng.choice(["500m", "1km", "2km", "1nm", ""]), start.isoformat(timespec="minutes"),
                rng.choice(["1h", "2h", "90m", "4h", "30m"]), rng.choice(["UNCLASS"] * 8 + ["FOUO", "LES"]),
                f"planned activity {i}" if rng.random() < 0.3 else "", rng.choice(["", "desk 0600", '"watch, ext 2"']),
            ])


def run(path: Path, url: str) -> tuple[float, str]:
    """Wall and CPU time of one `watchfloor import ops` process (CPU time matters on a shared, loaded machine)."""
    subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "db", "upgrade", "--db", url], check=True, capture_output=True)
    t, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "import", "ops", str(path), "--zone", "LALB", "--db", url],
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    if out.returncode != 0:
        raise SystemExit(f"import failed ({out.returncode}): {out.stderr[-2000:]}")
    return elapsed, f"{cpu_s:.1f} s CPU of the import process | {out.stdout.strip()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ops.csv"
        generate(path, args.rows)
        print(f"rows: {args.rows}  file: {path.stat().st_size / 1e6:.1f} MB  zone LALB, agencies {len(AGENCIES)}, 2024-2027", flush=True)
        secs, line = run(path, f"sqlite:///{tmp}/bench.db")
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        print(f"sqlite:     {secs:6.1f} s wall (subprocess, incl. start-up)  | {line}")
        with ExitStack() as stack:
            try:
                url = stack.enter_context(temporary_database(prefix="wf_bench"))
            except Exception as e:
                print(f"postgresql: skipped ({e})")
                return
            secs, line = run(path, url)
            print(f"postgresql: {secs:6.1f} s wall (subprocess, incl. start-up)  | {line}")

if __name__ == "__main__":
    main()
