"""Chat commands while every zone's morning briefing is made (issue 27): their round trip ÷ idle, the briefings made
as before (jobs in the event loop's executor, pictures drawn in the job's thread) and as now (the scheduler's own
threads, pictures drawn in bot/drawing.py's process), arms alternating in this one run.

PostgreSQL, the 37 zones of bench/bench_briefing.py's realistic day (20-60 operations a zone, targets, conflicts;
three rooms a zone, the console's three clearances). Commands are handled as `watchfloor run` handles them
(`asyncio.to_thread(engine.handle)` from the event loop), one every 0.2 s (300 a minute, the national rate), each
an `op log` in a random zone's console room; the round trip is the handling's, as the engine sees it.

Run: python bench/bench_briefing_commands.py [--rounds 2] [--seed 7]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_briefing import fill, settings  # noqa: E402
from sqlalchemy import text  # noqa: E402
from tests.fixtures.postgres import temporary_database  # noqa: E402
from tests.helpers import ConsoleUser  # noqa: E402
from watchfloor.bot import drawing  # noqa: E402
from watchfloor.bot.scheduler import JOB_THREADS, post_briefing  # noqa: E402
from watchfloor.bot.timeline import timeline  # noqa: E402
from watchfloor.bot.wiring import build  # noqa: E402
from watchfloor.ioc.zones import all_zones  # noqa: E402

EVERY = 0.2  # seconds between commands


def p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def commands(users: list[ConsoleUser], rng: random.Random, until, n: int | None = None) -> list[float]:
    """One command every EVERY seconds until `until()` is true (or n of them), each timed; all awaited."""
    loop = asyncio.get_running_loop()
    tasks = []

    async def one(user: ConsoleUser, i: int) -> float:
        z = all_zones()[user.room.id.split(":", 1)[1]]
        cmd = (f"!op log patrol at={z.lat + rng.uniform(-0.2, 0.2):.4f},{z.lon + rng.uniform(-0.2, 0.2):.4f} "
               f"start=+{1 + i % 30}h end=1h")
        t0 = time.perf_counter()
        answer = await asyncio.to_thread(user.say, cmd)
        took = time.perf_counter() - t0
        assert "OP-" in answer, answer
        return took

    i, next_at = 0, loop.time()
    while not until() and (n is None or i < n):
        tasks.append(asyncio.ensure_future(one(rng.choice(users), i)))
        i += 1
        next_at += EVERY
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return list(await asyncio.gather(*tasks))


async def arm(parts, at: dict, users, rng, how: str) -> tuple[list[float], float]:
    """Every zone's briefing made at once, `how`: "before" or "now"; commands meanwhile. (round trips, seconds
    the briefings took)"""
    loop = asyncio.get_running_loop()
    with parts.db.session() as s:
        s.execute(text("DELETE FROM outbox WHERE kind = 'briefing'"))
        s.commit()
    if how == "before":
        # APScheduler's AsyncIOExecutor: each zone's job in the event loop's default executor; drawn in its thread
        jobs = [loop.run_in_executor(None, post_briefing, parts, code, when, max(at.values()), timeline)
                for code, when in at.items()]
    else:
        pool = ThreadPoolExecutor(JOB_THREADS)
        jobs = [loop.run_in_executor(pool, post_briefing, parts, code, when, max(at.values()), drawing.draw)
                for code, when in at.items()]
    t0 = time.perf_counter()
    done = asyncio.ensure_future(asyncio.gather(*jobs))
    took = await commands(users, rng, done.done)
    rows = sum(await done)
    elapsed = time.perf_counter() - t0
    assert rows >= 3 * len(at), rows
    if how == "now":
        pool.shutdown()
    return took, elapsed


async def main_async(url: str, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    parts = build(settings=settings(), db_url=url)
    t0 = time.perf_counter()
    at = fill(parts, rng)
    print(f"filled {len(at)} zones in {time.perf_counter() - t0:.1f} s")
    users = [ConsoleUser(parts, code, f"u{code.lower()}", "CBP") for code in at]
    # warm: templates compiled, matplotlib loaded here, the drawing process started (none is a per-briefing cost)
    await asyncio.to_thread(post_briefing, parts, next(iter(at)), at[next(iter(at))], max(at.values()), timeline)
    await asyncio.to_thread(drawing.draw, {"by_agency": {}})
    await commands(users, rng, lambda: False, 10)
    idle = await commands(users, rng, lambda: False, 100)
    results: dict[str, list[float]] = {"before": [], "now": []}
    spans: dict[str, list[float]] = {"before": [], "now": []}
    for _ in range(rounds):
        for how in ("before", "now"):
            took, span = await arm(parts, at, users, rng, how)
            results[how] += took
            spans[how].append(span)
    drawing.shutdown()
    parts.db.dispose()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"idle: {len(idle)} commands, p50 {p(idle, .5) * 1000:.0f} ms, p99 {p(idle, .99) * 1000:.0f} ms")
    for how, what in (("before", "jobs in the loop's executor, pictures in their threads"),
                      ("now", f"the scheduler's {JOB_THREADS} job thread(s), pictures in the drawing process")):
        xs = results[how]
        print(f"while 37 zones' briefings are made, {what}: {len(xs)} commands, p50 {p(xs, .5) * 1000:.0f} ms "
              f"({p(xs, .5) / p(idle, .5):.2f}x idle), p99 {p(xs, .99) * 1000:.0f} ms ({p(xs, .99) / p(idle, .99):.2f}x "
              f"idle), max {max(xs) * 1000:.0f} ms; the briefings took "
              f"{', '.join(f'{s:.1f}' for s in spans[how])} s")
    b, n = results["before"], results["now"]
    print(f"before ÷ now: p50 {p(b, .5) / p(n, .5):,.0f}x, p99 {p(b, .99) / p(n, .99):,.0f}x "
          f"(load average at the end {load}; mean {statistics.mean(b) * 1000:,.0f} vs "
          f"{statistics.mean(n) * 1000:.0f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    with temporary_database(prefix="wf_bench") as url:
        asyncio.run(main_async(url, args.rounds, args.seed))


if __name__ == "__main__":
    main()
