"""Time the morning briefings of all 37 zones on a realistic day (SQLite, and PostgreSQL if reachable).

Each zone gets 20-60 operations of several agencies that day (some LES), a few done yesterday, targets
arriving (some endorsed, some covered), and the conflicts a scan finds. Each zone has a Slack joint room
(UNCLASS), a Matrix watch room (UNCLASS, FOUO, LES) and its console room (one rendering per clearance).

Run: python bench/bench_briefing.py [--seed 7] [--no-pg]
Prints, measured in this one run: the text briefings alone (build + render, one clearance per zone), the
timeline pictures alone, and the whole posting (every room, every clearance, pictures, outbox rows), each as
wall time and CPU time of this process (on a busy machine wall time also counts waiting for a core; with
SQLite all the work is in this process, so its CPU time is the cost).
"""
from __future__ import annotations

import argparse
from contextlib import ExitStack
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from watchfloor.bot.scheduler import JobScheduler, briefing_trigger  # noqa: E402
from watchfloor.bot.timeline import timeline  # noqa: E402
from watchfloor.bot.wiring import build  # noqa: E402
from watchfloor.commands.briefing import build_briefing  # noqa: E402
from watchfloor.config import load_settings  # noqa: E402
from tests.fixtures.postgres import temporary_database  # noqa: E402
from watchfloor.ioc.markings import ALL_MARKINGS  # noqa: E402
from watchfloor.ioc.zones import all_zones  # noqa: E402
from watchfloor.storage import operations as ops_repo  # noqa: E402
from watchfloor.storage.tables import EndorsementRow, OperationRow, TargetRow  # noqa: E402
from watchfloor.templates import render  # noqa: E402
from sqlmodel import select  # noqa: E402

AGENCIES = ["CBP", "USCG", "HSI", "PD", "PORT", "AMO"]
TYPES = ["boarding", "inspection", "patrol", "escort", "surveillance", "security-zone", "dive", "exercise"]
DAY = datetime(2026, 12, 2)  # the local date every zone is briefed for


def imo(rng: random.Random) -> str:
    d = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(5)]
    return "IMO" + "".join(map(str, d)) + str(sum(x * w for x, w in zip(d, range(7, 1, -1))) % 10)


def settings():
    zones, rooms = [], []
    for code in all_zones():
        joint, watch = f"slack:CJ{code}", f"matrix:!w{code.lower()}:localhost"
        zones.append({"code": code, "joint_rooms": [joint], "watch_rooms": [watch]})
        rooms.append({"id": watch, "clearance": ["UNCLASS", "FOUO", "LES"]})
    return load_settings(None, zone=zones, room=rooms)


def fill(parts, rng: random.Random) -> dict[str, datetime]:
    """A realistic day in every zone; returns each zone's briefing time (07:00 local) in UTC."""
    at = {}
    with parts.db.session() as s:
        for zone in all_zones().values():
            brief = briefing_trigger(zone, datetime(2000, 1, 1, 7).time()).get_next_fire_time(
                None, DAY.replace(tzinfo=zone.tz) - timedelta(hours=1))
            at[zone.code] = brief.astimezone(UTC)
            created = brief - timedelta(days=1)
            fleet = [imo(rng) for _ in range(40)]
            for i in range(rng.randint(20, 60)):
                start = brief + timedelta(minutes=rng.randrange(-6 * 60, 16 * 60, 15))
                done = start < brief - timedelta(hours=5)
                row = OperationRow(
                    zone_code=zone.code, agency_code=rng.choice(AGENCIES), type=rng.choice(TYPES),
                    vessel_key=rng.choice(fleet) if rng.random() < 0.6 else None,
                    start_at=start, end_at=start + timedelta(minutes=rng.choice([60, 90, 120, 180, 240])),
                    marking=rng.choices(["UNCLASS", "FOUO", "LES"], [7, 2, 1])[0],
                    status="done" if done else "planned", outcome="no findings" if done else None,
                    contact=f"{zone.code} desk {i % 5}", created_by="bench", created_at=created,
                    updated_at=created)
                ops_repo.set_place(row, zone.lat + rng.uniform(-0.05, 0.05), zone.lon + rng.uniform(-0.05, 0.05),
                                   rng.choice([300.0, 500.0, 1000.0, 1852.0]))
                s.add(row)
            for j in range(rng.randint(3, 10)):
                t = TargetRow(zone_code=zone.code, vessel_key=rng.choice(fleet), name=f"Vessel {j}",
                              eta=brief + timedelta(hours=rng.uniform(0, 30)),
                              priority=rng.choice(["high", "medium", "low"]), agency_code=rng.choice(AGENCIES),
                              nominated_by="bench", marking=rng.choices(["UNCLASS", "LES"], [4, 1])[0],
                              created_at=created, updated_at=created)
                s.add(t)
                s.flush()
                for a in {t.agency_code, *rng.sample(AGENCIES, rng.randint(0, 2))}:
                    s.add(EndorsementRow(target_id=t.id, agency_code=a, endorsed_by="bench", at=created))
    for code, brief in at.items():  # the conflicts the periodic scan would have raised by then
        with parts.db.session() as s:
            parts.engine.deconfliction.scan_zone(s, code, brief - timedelta(hours=1))
    return at


def run(url: str, label: str, seed: int) -> None:
    parts = build(settings=settings(), db_url=url)
    t0 = time.perf_counter()
    at = fill(parts, random.Random(seed))
    with parts.db.session() as s:
        n_ops = len(s.exec(select(OperationRow.id)).all())
    print(f"[{label}] filled {len(at)} zones, {n_ops} operations in {time.perf_counter() - t0:.1f} s")

    render("briefing.j2", **_warm(parts, at))  # first render compiles the templates; not a per-briefing cost
    t0, c0 = time.perf_counter(), time.process_time()
    datas = []
    with parts.db.session() as s:
        for code, when in at.items():
            data = build_briefing(s, parts.directory, all_zones()[code], when, ALL_MARKINGS)
            render("briefing.j2", **data)
            datas.append(data)
    print(f"[{label}] text briefings, 37 zones (build + render, full clearance): {_took(t0, c0)}")

    t0, c0 = time.perf_counter(), time.process_time()
    drawn = [p for p in (timeline(d) for d in datas) if p is not None]
    size = sum(len(p.png) for p in drawn) / max(1, len(drawn)) / 1024
    print(f"[{label}] timeline pictures, {len(drawn)} zones: {_took(t0, c0)} (average PNG {size:.0f} KiB)")

    sched = JobScheduler(parts, lambda: max(at.values()))
    t0, c0 = time.perf_counter(), time.process_time()
    rows = sum(sched.post_briefing(code, when) for code, when in at.items())
    print(f"[{label}] posted: {rows} outbox rows (3 rooms x 37 zones, console with 3 clearances, pictures per "
          f"clearance): {_took(t0, c0)}")
    again = sum(sched.post_briefing(code, when) for code, when in at.items())
    print(f"[{label}] posting again the same day: {again} rows")
    parts.db.dispose()


def _took(t0: float, c0: float) -> str:
    """Wall time, and this process's CPU time: on a shared machine the second is the one that compares."""
    return f"{time.perf_counter() - t0:.2f} s wall, {time.process_time() - c0:.2f} s CPU"


def _warm(parts, at):
    with parts.db.session() as s:
        code = next(iter(at))
        data = build_briefing(s, parts.directory, all_zones()[code], at[code], ALL_MARKINGS)
    timeline(data)  # matplotlib's first figure loads fonts; not a per-briefing cost either
    return data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'bench.db'}", "sqlite", args.seed)
    if args.no_pg:
        return
    with ExitStack() as stack:
        try:
            url = stack.enter_context(temporary_database(prefix="wf_bench"))
        except Exception as e:
            print(f"[postgresql] skipped: {e}")
            return
        run(url, "postgresql", args.seed)

if __name__ == "__main__":
    main()
