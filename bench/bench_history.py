"""Years of history: `op log` with three years of a busy port system stored, and `import ops` into it.

Run: python bench/bench_history.py [--ops 2000000] [--import-rows 200000] [--import-runs 3] [--only sqlite|postgresql]

Every figure is measured in this one run on this machine:

1. `op log`, command to reply through Engine.handle (the console path, as bench/bench_conflicts.py), with
   --ops stored operations (three years, all 37 zones, LALB the busiest with a tenth of them) ÷ with 100 stored
   at the same local density, on SQLite (a temporary file) and PostgreSQL (a database of its own, dropped at the
   end). The two databases take the same commands in turn, one by one, so the machine's other load falls on
   both alike; the ratio is of the medians. Goal ≤ 1.5× on each.
2. `import ops` of --import-rows rows (bench/bench_import.py's file: one zone, 2024-2027), each run into a fresh
   copy of the PostgreSQL database holding the history, every row validated and checked for conflicts:
   rows/s of the import itself (in this process) and of the `watchfloor import ops` command (a process of its
   own, start-up included), runs alternating. Goal ≥ 25,000 rows/s.

The fill is set-up, not measured: COPY on PostgreSQL, large executemany transactions on SQLite (minutes for
2,000,000). PostgreSQL is ANALYZEd after the fill, as autovacuum would have done long before three years passed.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, insert  # noqa: E402

from watchfloor.commands.importer import import_ops  # noqa: E402
from watchfloor.commands.message import ChatMessage  # noqa: E402
from watchfloor.ioc.geo import circle_bbox  # noqa: E402
from watchfloor.ioc.model import Operation  # noqa: E402
from watchfloor.ioc.zones import all_zones  # noqa: E402
from watchfloor.storage.tables import OperationRow  # noqa: E402
from bench.bench_conflicts import AGENCIES, HOTSPOTS, NOW, PER_DAY, TYPES, probe_commands  # noqa: E402
from bench.bench_import import generate  # noqa: E402
from tests.fixtures.postgres import PG_ADMIN_URL, temporary_database  # noqa: E402
from tests.helpers import check_query_plans, make_parts  # noqa: E402

YEARS = 3
BUSIEST_SHARE = 0.10  # LALB, where the probes log, holds a tenth of the history
HORIZON = NOW + timedelta(days=2)
LALB = (33.74, -118.27)


def history(n: int, rng: random.Random) -> list[dict]:
    """n operations over YEARS years ending at HORIZON, in start order (ids grow with time, as in real use)."""
    zones = [z for z in all_zones().values() if z.code != "LALB"]
    span = timedelta(days=365 * YEARS).total_seconds()
    first = HORIZON - timedelta(seconds=span)
    rows = []
    for _ in range(n):
        start = (first + timedelta(seconds=rng.uniform(0, span))).replace(second=0, microsecond=0)
        rows.append(_op(rng, start, "LALB" if rng.random() < BUSIEST_SHARE else None, zones))
    rows.sort(key=lambda r: r["start_at"])
    return rows


def recent(n: int, rng: random.Random) -> list[dict]:
    """n LALB operations ending at HORIZON at the density the history has there (the small database)."""
    span = timedelta(days=n / PER_DAY).total_seconds()
    first = HORIZON - timedelta(seconds=span)
    return [_op(rng, (first + timedelta(seconds=rng.uniform(0, span))).replace(second=0, microsecond=0), "LALB", [])
            for _ in range(n)]


def _op(rng: random.Random, start: datetime, zone: str | None, others) -> dict:
    if zone is None:
        z = rng.choice(others)
        zone, (lat0, lon0) = z.code, (z.lat, z.lon)
        lat, lon = lat0 + rng.uniform(-0.35, 0.35), lon0 + rng.uniform(-0.4, 0.4)
    elif rng.random() < 0.4:
        lat0, lon0 = rng.choice(HOTSPOTS)
        lat, lon = lat0 + rng.uniform(-0.02, 0.02), lon0 + rng.uniform(-0.02, 0.02)
    else:
        lat, lon = LALB[0] + rng.uniform(-0.35, 0.35), LALB[1] + rng.uniform(-0.4, 0.4)
    end = start + timedelta(minutes=rng.choice(range(60, 361, 15)))
    radius = rng.choice([100.0, 200.0, 300.0, 500.0, 500.0, 1000.0])
    status = rng.choices(["done", "cancelled", "planned"], [90, 5, 5])[0] if end < NOW else "planned"
    box = circle_bbox(lat, lon, radius)
    return dict(
        zone_code=zone, agency_code=rng.choice(AGENCIES), type=rng.choice(TYPES),
        vessel_key=f"mmsi:{366000000 + rng.randrange(5000)}" if rng.random() < 0.6 else None,
        lat=lat, lon=lon, radius_m=radius, min_lat=box.min_lat, max_lat=box.max_lat, min_lon=box.min_lon,
        max_lon=box.max_lon, start_at=start, end_at=end, marking="UNCLASS", status=status, revision=1,
        created_by="bench", created_room=f"console:{zone}", created_at=NOW, updated_at=NOW,
    )


def fill(parts, rows: list[dict]) -> None:
    if parts.db.is_postgres:
        with parts.db.session() as s:
            cur_conn = s.connection().connection.driver_connection
            columns = list(rows[0])
            with cur_conn.cursor() as cur, cur.copy(f"COPY operation ({', '.join(columns)}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(tuple(r.values()))
        with parts.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE operation")
        return
    table = OperationRow.__table__
    for i in range(0, len(rows), 250_000):
        with parts.db.session() as s:  # one transaction a quarter million rows
            conn = s.connection()
            for j in range(i, min(i + 250_000, len(rows)), 50_000):
                conn.execute(insert(table), rows[j:j + 50_000])


def query_plans(parts) -> list[str]:
    """The plan of each query on `operation` that the per-operation conflict check runs, on the big database."""
    probe = Operation(id=0, zone="LALB", agency="USCG", type="patrol", start=NOW + timedelta(hours=36),
                      end=NOW + timedelta(hours=38), lat=33.74, lon=-118.27, radius_m=500,
                      vessel_key="mmsi:366000001")
    return check_query_plans(parts, probe)


def interleaved_op_log(dbs: dict, commands: list[str], tag: str) -> dict[int, list[float]]:
    """Seconds from handing each `op log` to the engine to its reply being stored, on each database in turn
    command by command, so the machine's other load falls on both alike (a shared machine is noisy)."""
    users = {n: parts.directory.add_console("LALB", "bench", "USCG", None) for n, parts in dbs.items()}
    times: dict[int, list[float]] = {n: [] for n in dbs}
    for i, text in enumerate(commands):
        for n, parts in dbs.items():
            room, sender = users[n]
            t0 = time.perf_counter()
            handled = parts.engine.handle(ChatMessage("console", room.id, sender.id, text, f"{tag}-{n}-{i}", "bench"))
            elapsed = time.perf_counter() - t0
            assert handled.error is None, handled.error
            if i >= 30:  # the first warm the caches the way a running bot has them
                times[n].append(elapsed)
    return times


def op_log_ratio(name: str, make_url, n_big: int, small: int, rng: random.Random):
    print(f"{name}: op log with {n_big:,} stored vs {small} stored", flush=True)
    commands = probe_commands(630, random.Random(7))
    dbs = {}
    for n in (small, n_big):
        parts = make_parts(make_url(n), lambda: NOW)
        rows = recent(n, rng) if n == small else history(n, rng)
        t0 = time.perf_counter()
        fill(parts, rows)
        del rows
        print(f"   stored {n:,} in {time.perf_counter() - t0:.0f} s (set-up; the probes add {len(commands)} more)",
              flush=True)
        dbs[n] = parts
    times = interleaved_op_log(dbs, commands, name)
    for n in (small, n_big):
        q = statistics.quantiles(times[n], n=10)
        print(f"   op log with {n:,} stored: median {statistics.median(times[n]) * 1000:.1f} ms "
              f"(p10 {q[0] * 1000:.1f}, p90 {q[-1] * 1000:.1f}; {len(times[n])} commands)")
    for plan in query_plans(dbs[n_big]):
        print(f"   plan: {plan}")
    k = len(times[small]) // 3
    thirds = [statistics.median(times[n_big][i * k:(i + 1) * k]) / statistics.median(times[small][i * k:(i + 1) * k])
              for i in range(3)]
    print(f"   RATIO op log {n_big:,} ÷ {small} ({name}): "
          f"{statistics.median(times[n_big]) / statistics.median(times[small]):.2f}× (medians; each third of the "
          f"commands: {', '.join(f'{r:.2f}' for r in thirds)}) (goal ≤ 1.5×)", flush=True)
    dbs[small].db.dispose()
    return dbs[n_big]


class ServerCpu:
    """CPU time PostgreSQL's server processes spend for this engine's connections (a local server read through
    /proc): on a machine shared with other work the wall time says little, the CPU time what the work costs."""

    def __init__(self, engine):
        self.start: dict[int, float] = {}
        event.listen(engine, "checkout", self._checkout)

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _checkout(self, dbapi_conn, _record, _proxy) -> None:
        pid = dbapi_conn.info.backend_pid
        if pid not in self.start:
            self.start[pid] = self._cpu(pid)

    def seconds(self) -> float | None:
        if not self.start or None in self.start.values():
            return None  # not a local server
        return sum(self._cpu(pid) - cpu for pid, cpu in self.start.items())


@contextmanager
def copy_of(url: str, admin_url: str = PG_ADMIN_URL):
    """A new database made from `url`'s as a template (a file copy: seconds, not the minutes of a fill)."""
    import psycopg

    source, name = url.rsplit("/", 1)[1], f"wf_bench_history_run_{uuid.uuid4().hex[:8]}"
    admin = admin_url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    try:
        yield f"{url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def import_rate(url: str, tmp: Path, n: int, runs: int) -> None:
    """Each run imports the same file into its own copy of the database holding the history, alternately in
    this process (the import alone) and as the `watchfloor import ops` command (start-up included)."""
    print(f"postgresql: import ops of {n:,} rows (one zone, 2024-2027) into a copy of the database holding the "
          f"history, each run", flush=True)
    path = tmp / "import.csv"
    generate(path, n)
    rates, cli_rates = [], []
    for run in range(runs):
        with copy_of(url) as run_url:
            if run % 2 == 0:
                parts = make_parts(run_url)  # the machine's clock, as the command has it
                server = ServerCpu(parts.db.engine)
                t0, cpu0 = time.perf_counter(), time.process_time()
                result = import_ops(parts.engine, path, "LALB", actor="bench")
                secs, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                served = server.seconds()
                parts.db.dispose()
                rates.append(n / secs)
                cpu_line = f"{cpu:.1f} s CPU in this process"
                if served is not None:
                    cpu_line += f" + {served:.1f} s in PostgreSQL's: {n / (cpu + served):,.0f} rows per CPU second"
                print(f"   in process: {secs:.1f} s = {n / secs:,.0f} rows/s ({cpu_line}); "
                      f"{len(result.conflicts):,} conflicts raised; load average {os.getloadavg()[0]:.1f}", flush=True)
            else:
                t0, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "import", "ops", str(path),
                                      "--zone", "LALB", "--db", run_url], capture_output=True, text=True)
                secs = time.perf_counter() - t0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if out.returncode != 0:
                    raise SystemExit(f"import failed ({out.returncode}): {out.stderr[-2000:]}")
                cli_rates.append(n / secs)
                cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                print(f"   watchfloor import ops: {secs:.1f} s = {n / secs:,.0f} rows/s ({cpu:.1f} s CPU, start-up "
                      f"included) | {out.stdout.strip()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    line = f"   RATE import ops in process: {min(rates):,.0f}–{max(rates):,.0f} rows/s over {len(rates)} runs"
    if cli_rates:
        line += f"; as the command: {min(cli_rates):,.0f}–{max(cli_rates):,.0f} rows/s over {len(cli_rates)}"
    print(line + " (goal ≥ 25,000)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=2_000_000, help="operations in the big history")
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--import-rows", type=int, default=200_000)
    ap.add_argument("--import-runs", type=int, default=3, help="alternately in this process and as the command")
    ap.add_argument("--only", choices=["sqlite", "postgresql"])
    args = ap.parse_args()
    rng = random.Random(20261201)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        if args.only != "postgresql":
            big = op_log_ratio("sqlite", lambda n: f"sqlite:///{tmp / f'history{n}.db'}", args.ops, args.small, rng)
            big.db.dispose()
            for f in tmp.glob("history*"):
                f.unlink()
        if args.only == "sqlite":
            return
        urls = {}

        def pg_url(n: int) -> str:
            urls[n] = stack.enter_context(temporary_database(prefix="wf_bench_history"))
            return urls[n]

        op_log_ratio("postgresql", pg_url, args.ops, args.small, rng).db.dispose()
        if args.import_runs:
            import_rate(urls[args.ops], tmp, args.import_rows, args.import_runs)


if __name__ == "__main__":
    main()
