"""Takeover time of the duties when their holder dies, with `watchfloor run` replicas on one PostgreSQL database.

Goal (issue 16): after SIGKILL of the duty holder, every duty (scheduler, AIS feed, Slack delivery) held again by
another replica within 30 s: median and worst over 10 kills. A replica is started again after each kill, so two
run at every kill. Also measured: takeover after SIGSTOP (a frozen holder, whose session only the server's
idle_session_timeout ends), and how soon a command handed to a replica that does not deliver Slack is posted by
the one that does (woken by NOTIFY), beside a command handed to the holder itself.

    python bench/bench_takeover.py [--kills 10] [--freezes 3] [--commands 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.postgres import temporary_database  # noqa: E402
from tests.fixtures.slack_api import MockSlackApi  # noqa: E402
from tests.test_replicas import (SLACK_DUTIES, Replica, holders, log_op, one_holder_each, posts, say,  # noqa: E402
                                 wait_until)

GOAL = 30.0


def takeover(group: list[Replica], how: str) -> tuple[float, Replica]:
    """Stop the holder of Slack delivery (SIGKILL or SIGSTOP); seconds until the others hold every duty."""
    [holder] = holders(group, "delivery:slack")
    rest = [r for r in group if r is not holder]
    t0 = time.monotonic()
    holder.kill() if how == "kill" else holder.freeze()
    while not one_holder_each(rest):
        time.sleep(0.05)
        if time.monotonic() - t0 > 120:
            raise SystemExit(f"no takeover after {how} within 120 s")
    return time.monotonic() - t0, holder


def answer_latency(api: MockSlackApi, group: list[Replica], n: int, start: int) -> tuple[list[float], list[float]]:
    """Seconds from a command's request to its answer at the stand-in: handed to the holder, and to another."""
    [holder] = holders(group, "delivery:slack")
    other = next(r for r in group if r is not holder)
    own, cross = [], []
    for i in range(n):
        k = start + i
        to, out = (holder, own) if i % 2 else (other, cross)
        t0 = time.time()
        say(to, log_op(k), f"17646{k:05d}.000100")
        marker = f"OP-{k + 1} logged"  # each command logs the next operation
        wait_until(lambda m=marker: posts(api, m), f"answer {marker}", 20, group)
        [post] = posts(api, marker)
        out.append(post.time - t0)
    return own, cross


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--freezes", type=int, default=3)
    ap.add_argument("--commands", type=int, default=20)
    args = ap.parse_args()
    kills, freezes = [], []
    with MockSlackApi() as api, temporary_database(prefix="wf_bench") as url, \
            tempfile.TemporaryDirectory() as tmp:
        started: list[Replica] = []

        def replica() -> Replica:
            r = Replica(Path(tmp), f"r{len(started)}", url, api).start()
            started.append(r)
            return r

        group = [replica(), replica()]
        try:
            wait_until(lambda: one_holder_each(group), "one holder per duty", 60, group)
            own, cross = answer_latency(api, group, args.commands, 0)
            for _ in range(args.kills):
                took, gone = takeover(group, "kill")
                kills.append(took)
                group = [r for r in group if r is not gone] + [replica()]
                wait_until(lambda: one_holder_each(group), "the new replica answers", 60, group)
            for _ in range(args.freezes):
                took, frozen = takeover(group, "freeze")
                freezes.append(took)
                frozen.thaw()
                wait_until(lambda: one_holder_each(group), "one holder per duty after the thaw", 30, group)
        finally:
            for r in started:
                r.close()

    ms = lambda xs: f"median {statistics.median(xs) * 1000:.0f} ms, worst {max(xs) * 1000:.0f} ms"  # noqa: E731
    print(f"duties: {', '.join(SLACK_DUTIES)}; 2 replicas at each stop")
    print(f"SIGKILL of the holder, {len(kills)} kills: median {statistics.median(kills):.1f} s, "
          f"worst {max(kills):.1f} s (goal <= {GOAL:g} s: {'met' if max(kills) <= GOAL else 'NOT met'})")
    if freezes:
        print(f"SIGSTOP of the holder, {len(freezes)} freezes: median {statistics.median(freezes):.1f} s, "
              f"worst {max(freezes):.1f} s (goal <= {GOAL:g} s: {'met' if max(freezes) <= GOAL else 'NOT met'})")
    print(f"command answered, handed to the holder ({len(own)}): {ms(own)}")
    print(f"command answered, handed to another replica ({len(cross)}, NOTIFY wake-up): {ms(cross)}")
    return 0 if max(kills) <= GOAL and (not freezes or max(freezes) <= GOAL) else 1


if __name__ == "__main__":
    sys.exit(main())
