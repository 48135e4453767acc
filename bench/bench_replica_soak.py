"""The long replica soak (issue 16): three `watchfloor run` replicas on one PostgreSQL database, Slack (the Web
API stand-in) and Matrix (a real Synapse), 1,000 messages — relays both ways, commands on both platforms, clashing
operations that alert the watch rooms — while a replica is SIGKILLed every few seconds (always one left alive) and
started again; the zone's briefing falls due in the middle. Printed: delivered / lost / duplicated / out-of-order
counts per room and in all, and the takeover times (kill → another replica's /metrics shows the duty held).

The short version CI runs is tests/test_replica_soak.py; the driver is tests/replica_soak.py.

    python bench/bench_replica_soak.py [--messages 1000] [--rate 5] [--kill-every 4] [--seed N]

Exits 1 if anything was lost, shown twice or out of order — the Slack intake's losses and disorder included, which
the CI version excuses as known — or a takeover took over 30 s. The replicas' logs and what each room showed are
kept in the printed directory.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.postgres import temporary_database  # noqa: E402
from tests.fixtures.slack_api import MockSlackApi  # noqa: E402
from tests.fixtures.synapse import SynapseServer  # noqa: E402
from tests.matrix_harness import make_world  # noqa: E402
from tests.replica_soak import Soak  # noqa: E402

GOAL = 30.0  # seconds, worst takeover


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=5.0, help="messages produced per second")
    ap.add_argument("--kill-every", type=float, default=4.0, help="seconds between kills, on average")
    ap.add_argument("--holders-first", type=float, default=0.5,
                    help="chance that a kill picks a holder of some duty rather than any replica")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--synapse-db", default="sqlite-tmpfs", help="the homeserver's own storage")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    # The briefing falls due mid-soak: its live firing races the kills (and each takeover's catch-up).
    briefing_in = min(3.0, args.messages / args.rate / 60 / 2 + 0.5)

    # Kept afterwards: the replicas' logs are the evidence when something was lost or shown twice.
    tmp = Path(tempfile.mkdtemp(prefix="wf-soak-"))
    (tmp / "replicas").mkdir()
    with MockSlackApi() as api, temporary_database(prefix="wf_soak") as url:
        synapse = SynapseServer(tmp / "synapse", database=args.synapse_db)
        synapse.start()
        try:
            world = make_world(synapse, joint=1)
            soak = Soak(synapse, api, url, tmp / "replicas", world, seed=seed, briefing_in=briefing_in)
            try:
                t0 = time.monotonic()
                soak.start()
                print(f"3 replicas up in {time.monotonic() - t0:.1f} s (seed {seed}, briefing at "
                      f"{soak.briefing_time} zone time, logs in {tmp / 'replicas'})", flush=True)
                report = soak.run(args.messages, rate=args.rate, kill_every=args.kill_every,
                                  holders_first=args.holders_first, restart_after=(1.0, 5.0),
                                  drain_timeout=180.0, briefing_wait=briefing_in * 60 + 60)
            finally:
                soak.close()
            tracebacks(soak)
            rooms = {"slack_joint": soak.slack_texts("C0JOINT"), "slack_watch": soak.slack_texts("C0WATCH"),
                     "matrix_joint": soak.matrix_texts(world.joint[0]), "matrix_watch": soak.matrix_texts(world.watch)}
            for name, texts in rooms.items():  # what each room showed, for the evidence
                (tmp / f"{name}.txt").write_text("\n\n=====\n\n".join(texts))
            print(f"rooms as shown: {tmp}/{{slack,matrix}}_{{joint,watch}}.txt")
        finally:
            synapse.stop()

    print(report.summary())
    worst = max((t for ts in report.takeovers.values() for t in ts), default=0.0)
    print(f"worst takeover {worst:.1f} s (goal <= {GOAL:g} s: {'met' if worst <= GOAL else 'NOT met'})")
    return 0 if report.ok() and worst <= GOAL else 1


def tracebacks(soak: Soak) -> None:
    """Tracebacks in the replicas' logs, told (not judged)."""
    for r in soak.group:
        n = r.log.read_text(errors="replace").count("Traceback") if r.log.exists() else 0
        if n:
            print(f"{r.name}: {n} tracebacks in its log ({r.log})")


if __name__ == "__main__":
    sys.exit(main())
