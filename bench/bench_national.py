"""The national-scale run (issue 27): one PostgreSQL database, three `watchfloor run` replicas, a real Synapse and
the Slack stand-in; every COTP zone with joint and watch rooms on both platforms, ~60 agencies and 2,000 members
(half of them on Matrix, each a real account in their zone's rooms); a national AIS feed made with pyais (20,000
vessels along the coasts, 3,000 sentences/s sustained over TCP and UDP with NMEA 4 tag-block times, bursts of
20,000 in one second); 300 chat commands a minute over the zones (`op log`, clashing ones raising overlaps,
`op update`, `op done`, `target nominate` raising coverage gaps, covering operations closing them, `conflicts
ack`); every zone's morning briefing falling due a few minutes in (each zone's `briefing_time` in its own time
zone); one SIGKILL of a duty holder in the middle, started again after a few seconds.

Printed, each ratio taken in this one run: the command round trip p50/p99 under load ÷ the same measured first
with the system idle (goal p99 <= 1.5x); the lag from a sentence to the stored position (probe vessels timed to
the position history and to the track; goal p99 <= 5 s); the AIS feed's counts, drops and queue from /metrics (and
the kernel's UDP drops); delivery lag per platform (outbox created → sent); memory of each replica and its AIS
decoding process every `--sample-every` seconds (flat after `--warmup`); database size growth per hour; and lost or
doubled messages, as the rooms show them: every command answered once, every conflict alerted once in each watch
room, every escalation once per district room, every briefing once per room, every outbox row shown once.

The full national run (all defaults; about 15 minutes on the project's 2-core machine: ~1.5 minutes filling the
homeserver (974 accounts, 83 rooms, 1,011 joins: 151 s at a load average of 8), ~2.5 minutes for the replicas' start
and the idle baseline, 8 minutes of load with the briefings due 2 to 4 minutes in and the SIGKILL at 4, ~1 minute of
drain and reading; the first run also encodes the fleet, ~40 s, cached under ~/.cache/watchfloor/bench-national):

    python bench/bench_national.py

Memory flat "after the first 10 minutes" needs an hour of load:

    python bench/bench_national.py --duration 3600 --warmup 600 --kill-at 1800

Small scale, for developing it on a shared machine (~3 minutes):

    python bench/bench_national.py --zones 3 --agencies 10 --members 90 --vessels 2000 --rate 300 --burst 3000 \\
        --burst-every 60 --commands-per-minute 60 --duration 150 --kill-at 75 --idle-commands 30 --briefing-in 1 \\
        --briefing-spread 0 --setup-allowance 60 --sample-every 15 --warmup 45

The short version CI runs is tests/test_national_short.py; the driver is tests/national_load.py (with
tests/national_world.py and tests/national_feed.py). Exits 1 if anything was lost or doubled or the run itself
went wrong (a duty not taken over, the killed replica's decoding process left alive); the speed goals are
printed as met or NOT met. The replicas' logs stay in the printed directory.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.postgres import temporary_database  # noqa: E402
from tests.fixtures.slack_api import MockSlackApi  # noqa: E402
from tests.fixtures.synapse import FAST_CONFIG, SynapseServer  # noqa: E402
from tests.national_load import Scale, run_national  # noqa: E402

HELP = {
    "zones": "COTP zones configured (the first ones are far apart, in different time zones)",
    "agencies": "agencies: the federal ones in every zone, then a local police / port authority per zone",
    "members": "people in the agencies, spread over the zones; two supervisors a zone among them",
    "vessels": "vessels in the national AIS feed, spread over the 37 zones' waters",
    "rate": "AIS sentences a second, sustained",
    "burst": "AIS sentences sent within one second, every --burst-every seconds",
    "burst_every": "seconds between bursts (0: none)",
    "commands_per_minute": "chat commands a minute in the loaded phase, spread over the zones",
    "duration": "seconds of the loaded phase",
    "kill_at": "seconds into the loaded phase for the SIGKILL (negative: no kill)",
    "kill_duty": "the SIGKILL hits the replica holding this duty (ais, scheduler, matrix, delivery:slack)",
    "restart_after": "seconds before the killed replica is started again",
    "idle_commands": "commands in the idle baseline at least (sent one at a time)",
    "briefing_in": "minutes into the loaded phase when the first zone's briefing falls due",
    "briefing_spread": "minutes over which the zones' briefings are spread",
    "setup_allowance": "seconds allowed for the replicas to start, to place the briefings after the idle phase",
    "matrix_share": "share of the members on Matrix (the others on Slack)",
    "feed": "mixed: the first AIS holder on TCP, the others on UDP (the kill moves the feed); or tcp, udp",
    "probe_rate": "position probes a second (their lag to the database is timed)",
    "sample_every": "seconds between memory and database-size samples",
    "warmup": "seconds of load after which memory must stay flat",
    "flat_mb": "memory growth after the warm-up still called flat (MB) ...",
    "flat_pct": "... or as a share (%%) of what the process held after the warm-up",
    "drain_timeout": "seconds to wait at the end for the outbox to empty",
    "replicas": "watchfloor run processes",
    "seed": "the random choices (commands, vessels, people)",
}


def parse(argv=None) -> tuple[Scale, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    choices = {"feed": ("mixed", "tcp", "udp"), "kill_duty": ("ais", "scheduler", "matrix", "delivery:slack")}
    for f in fields(Scale):
        kind = float if f.name == "kill_at" else type(f.default)
        ap.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default, help=HELP[f.name],
                        choices=choices.get(f.name))
    ap.add_argument("--synapse-db", default="sqlite-tmpfs", help="the homeserver's own storage")
    ap.add_argument("--synapse-config", choices=("fast", "test"), default="fast",
                    help="fast: push rules, user directory and stats off (the homeserver's own work per event that "
                         "the bot does not need; it shares the machine); test: as the test suite runs it")
    args = ap.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(Scale)}
    if values["kill_at"] is not None and values["kill_at"] < 0:
        values["kill_at"] = None
    return Scale(**values), args


def main() -> int:
    scale, args = parse()
    work = Path(tempfile.mkdtemp(prefix="wf-national-"))
    t0 = time.monotonic()
    with MockSlackApi() as api, temporary_database(prefix="wf_national") as url:
        synapse = SynapseServer(work / "synapse", database=args.synapse_db,
                                extra_config=FAST_CONFIG if args.synapse_config == "fast" else None)
        synapse.start()
        try:
            run, report = run_national(scale, synapse, api, url, work, log=lambda m: print(m, flush=True))
            for r in run.group:
                n = r.log.read_text(errors="replace").count("Traceback") if r.log.exists() else 0
                if n:
                    print(f"{r.name}: {n} tracebacks in its log ({r.log})")
        finally:
            synapse.stop()
    print(report.summary())
    print(f"(whole run {time.monotonic() - t0:.0f} s; replicas' logs in {work / 'replicas'})")
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
