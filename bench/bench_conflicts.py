"""How deconfliction cost grows: with the operations stored, with the zone's size, and against all pairs.

Run: python bench/bench_conflicts.py [--quick]

Every figure is a ratio of two timings taken in this one run on this machine (SQLite, a temporary directory):

1. `op log`, command to reply through Engine.handle (the console path), with 200,000 stored operations
   ÷ with 100 stored, at the same local density (goal ≤ 1.5×): the check reads a time window and a vessel,
   never the history.
2. `conflicts scan` (Deconfliction.scan_zone) with 40,000 live operations ÷ with 20,000 (goal ≤ 2.5×), both
   at the same density, so twice the operations means twice the days, not twice as crowded.
3. The sweep against the all-pairs reference at 20,000 operations. All pairs is quadratic and takes minutes
   there, so it is timed on random subsets and extrapolated by the number of pairs (said so in the output).

Density: a busy port zone. 120 operations a day, 40 % at a dozen berths and anchorages (within ~2 km), the rest
anywhere within ~40 km; 100 m–1 km circles (about one operation in twenty ends up in a conflict); 1–6 h
windows; six agencies; 60 % on one of 5,000 vessels.
Operations in the past are mostly done or cancelled, as a real history is.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from watchfloor.commands.message import ChatMessage  # noqa: E402
from watchfloor.ioc.conflicts import naive_findings, sweep  # noqa: E402
from watchfloor.ioc.geo import circle_bbox  # noqa: E402
from watchfloor.ioc.model import Operation  # noqa: E402
from watchfloor.storage.tables import OperationRow  # noqa: E402
from tests.helpers import check_query_plans, make_parts  # noqa: E402

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
PER_DAY = 120
AGENCIES = ["CBP", "USCG", "HSI", "AMO", "PD", "CHP"]
HOTSPOTS = [(33.74 + 0.03 * (i % 4), -118.27 + 0.04 * (i // 4)) for i in range(12)]
TYPES = ["boarding", "inspection", "patrol", "escort", "surveillance", "security-zone", "dive"]


def make_ops(n: int, rng: random.Random, end_at: datetime, all_live: bool) -> list[dict]:
    """n operations at PER_DAY a day, the last starting just before end_at."""
    span = timedelta(days=n / PER_DAY)
    first = end_at - span
    rows = []
    for _ in range(n):
        start = first + timedelta(seconds=rng.uniform(0, span.total_seconds()))
        start = start.replace(second=0, microsecond=0)
        end = start + timedelta(minutes=rng.choice(range(60, 361, 15)))
        if rng.random() < 0.4:
            lat0, lon0 = rng.choice(HOTSPOTS)
            lat, lon = lat0 + rng.uniform(-0.02, 0.02), lon0 + rng.uniform(-0.02, 0.02)
        else:
            lat, lon = 33.74 + rng.uniform(-0.35, 0.35), -118.27 + rng.uniform(-0.4, 0.4)
        radius = rng.choice([100.0, 200.0, 300.0, 500.0, 500.0, 1000.0])
        status = "planned"
        if not all_live and end < NOW:
            status = rng.choices(["done", "cancelled", "planned"], [90, 5, 5])[0]
        box = circle_bbox(lat, lon, radius)
        rows.append(dict(
            zone_code="LALB", agency_code=rng.choice(AGENCIES), type=rng.choice(TYPES),
            vessel_key=f"mmsi:{366000000 + rng.randrange(5000)}" if rng.random() < 0.6 else None,
            lat=lat, lon=lon, radius_m=radius, min_lat=box.min_lat, max_lat=box.max_lat, min_lon=box.min_lon,
            max_lon=box.max_lon, start_at=start, end_at=end, marking="UNCLASS", status=status, revision=1,
            created_by="bench", created_room="console:LALB", created_at=NOW, updated_at=NOW,
        ))
    return rows


def fresh(tmp: Path, name: str):
    return make_parts(f"sqlite:///{tmp / name}.db", lambda: NOW)


def bulk_insert(parts, rows: list[dict]) -> None:
    with parts.db.session() as s:
        for i in range(0, len(rows), 20_000):
            s.exec(insert(OperationRow), params=rows[i:i + 20_000])


def time_op_log(parts, commands: list[str], tag: str) -> float:
    """Median seconds from handing `op log` to the engine to its reply being stored (alerts included)."""
    room, sender = parts.directory.add_console("LALB", "bench", "USCG", None)
    for i, text in enumerate(commands[:10]):   # warm the caches the way a running bot has them
        parts.engine.handle(ChatMessage("console", room.id, sender.id, text, f"{tag}-warm-{i}", "bench"))
    times = []
    for i, text in enumerate(commands[10:]):
        t0 = time.perf_counter()
        handled = parts.engine.handle(ChatMessage("console", room.id, sender.id, text, f"{tag}-{i}", "bench"))
        times.append(time.perf_counter() - t0)
        assert handled.error is None, handled.error
    return statistics.median(times)


def probe_commands(n: int, rng: random.Random) -> list[str]:
    """op log commands for the busy day (a day and a half from now, inside every stored timeline)."""
    out = []
    for _ in range(n):
        lat0, lon0 = rng.choice(HOTSPOTS)
        start = (NOW + timedelta(hours=36 + rng.uniform(-6, 6))).astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
        vessel = f" vessel={366000000 + rng.randrange(5000)}" if rng.random() < 0.6 else ""
        out.append(f"!op log patrol at={lat0 + rng.uniform(-0.01, 0.01):.5f},{lon0 + rng.uniform(-0.01, 0.01):.5f}"
                   f" radius=300m start={start} end=2h{vessel}")
    return out


def query_plans(parts) -> list[str]:
    """EXPLAIN QUERY PLAN of what check_operation reads, on the big database."""
    probe = Operation(id=0, zone="LALB", agency="USCG", type="patrol", start=NOW + timedelta(hours=36),
                      end=NOW + timedelta(hours=38), lat=33.74, lon=-118.27, radius_m=500,
                      vessel_key="mmsi:366000001")
    return check_query_plans(parts, probe)

def time_scan(parts) -> tuple[float, float, int]:
    deconf = parts.engine.deconfliction
    t0 = time.perf_counter()
    with parts.db.session() as s:
        raised = len(deconf.scan_zone(s, "LALB", NOW).raised)
    first = time.perf_counter() - t0
    again = []
    for _ in range(3):
        t0 = time.perf_counter()
        with parts.db.session() as s:
            assert not deconf.scan_zone(s, "LALB", NOW)
        again.append(time.perf_counter() - t0)
    return first, min(again), raised


def to_domain(rows: list[dict]) -> list[Operation]:
    return [Operation(id=i, zone=r["zone_code"], agency=r["agency_code"], type=r["type"], start=r["start_at"],
                      end=r["end_at"], lat=r["lat"], lon=r["lon"], radius_m=r["radius_m"],
                      vessel_key=r["vessel_key"], status=r["status"]) for i, r in enumerate(rows, 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = ap.parse_args()
    big, small = (20_000, 100) if args.quick else (200_000, 100)
    scan_a, scan_b = (4_000, 2_000) if args.quick else (40_000, 20_000)
    rng = random.Random(20261201)
    horizon = NOW + timedelta(days=2)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)

        print(f"1. op log with {big:,} stored operations vs {small} (same density: {PER_DAY}/day)")
        commands = probe_commands(420, random.Random(7))
        timings: dict[int, list[float]] = {}
        dbs = {}
        for n in (small, big):
            parts = fresh(tmp, f"oplog{n}")
            t0 = time.perf_counter()
            bulk_insert(parts, make_ops(n, rng, horizon, all_live=False))
            print(f"   stored {n:,} in {time.perf_counter() - t0:.1f} s")
            dbs[n] = parts
        # Alternate the two databases, so warm-up and the machine's other load fall on both alike.
        for round_ in range(2):
            for n in (small, big):
                chunk = commands[round_ * 210:(round_ + 1) * 210]
                timings.setdefault(n, []).append(time_op_log(dbs[n], chunk, f"n{n}r{round_}"))
        for n in (small, big):
            print(f"   median op log with {n:,} stored: {min(timings[n]) * 1000:.1f} ms "
                  f"(rounds: {', '.join(f'{t * 1000:.1f}' for t in timings[n])} ms)")
        for plan in query_plans(dbs[big]):
            print(f"   plan: {plan}")
        for parts in dbs.values():
            parts.db.dispose()
        timings = {n: min(ts) for n, ts in timings.items()}
        print(f"   RATIO op log {big:,} ÷ {small}: {timings[big] / timings[small]:.2f}× (goal ≤ 1.5×)")

        print(f"2. conflicts scan with {scan_a:,} live operations vs {scan_b:,} (same density)")
        scans = {}
        for n in (scan_b, scan_a):
            parts = fresh(tmp, f"scan{n}")
            # The scan looks at operations not yet over, so these lie ahead of NOW: n of them, 120 a day.
            bulk_insert(parts, make_ops(n, rng, NOW + timedelta(days=n / PER_DAY + 1), all_live=True))
            first, steady, raised = time_scan(parts)
            scans[n] = (first, steady)
            print(f"   {n:,} ops: first scan {first:.2f} s (raised {raised:,} conflicts), "
                  f"re-scan {steady:.2f} s")
            parts.db.dispose()
        print(f"   RATIO re-scan {scan_a:,} ÷ {scan_b:,}: {scans[scan_a][1] / scans[scan_b][1]:.2f}× (goal ≤ 2.5×)")
        print(f"   RATIO first scan {scan_a:,} ÷ {scan_b:,}: {scans[scan_a][0] / scans[scan_b][0]:.2f}×")

    print(f"3. sweep vs all pairs at {scan_b:,} operations")
    ops = to_domain(make_ops(scan_b, rng, horizon, all_live=True))
    t0 = time.perf_counter()
    found = sweep(ops)
    t_sweep = time.perf_counter() - t0
    print(f"   sweep: {t_sweep:.3f} s, {len(found):,} conflicts")
    per_pair = []
    for m in (1_000, 2_000):
        subset = random.Random(m).sample(ops, m)
        t0 = time.perf_counter()
        reference = naive_findings(subset)
        t_naive = time.perf_counter() - t0
        assert sweep(subset) == reference
        per_pair.append(t_naive / (m * (m - 1) / 2))
        print(f"   all pairs on a random {m:,} subset: {t_naive:.2f} s ({per_pair[-1] * 1e9:.0f} ns a pair; "
              f"sweep agrees)")
    pairs = scan_b * (scan_b - 1) / 2
    t_naive_full = per_pair[-1] * pairs
    print(f"   all pairs at {scan_b:,} EXTRAPOLATED (not run): {pairs:,.0f} pairs × {per_pair[-1] * 1e9:.0f} ns "
          f"= {t_naive_full:.0f} s")
    print(f"   RATIO sweep speed-up at {scan_b:,}: {t_naive_full / t_sweep:.0f}× (all pairs extrapolated)")


if __name__ == "__main__":
    main()
