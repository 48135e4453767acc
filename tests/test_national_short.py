"""The national-scale run's short version, for CI (issue 27): three `watchfloor run` replicas on one PostgreSQL
database with Slack (the stand-in) and Matrix (the real Synapse), two zones with joint and watch rooms on both
platforms, an AIS feed over TCP and then UDP with a burst, chat commands raising and acknowledging conflicts, both
zones' briefings falling due, and a SIGKILL of the replica holding every duty, started again.

It asserts what must hold whatever the machine's speed: every command answered exactly once, every conflict
alerted once in each watch room, every briefing once in each room, every outbox row shown once where it went, every
duty taken over; and memory flat once the run has settled. Speed is the long run's: bench/bench_national.py (the
driver is tests/national_load.py)."""
from __future__ import annotations

import pytest

from tests.fixtures.slack_api import MockSlackApi
from tests.national_load import Scale, run_national

pytestmark = [pytest.mark.postgres, pytest.mark.synapse]

# ~3 minutes here (3:19 at a load average of 5-7): ~30-90 s of start and idle baseline (the load waits for its
# planned minute: briefing_time is HH:MM), 85 s of load (the briefings due 5 s in, the SIGKILL at 15 s), the rest
# draining and reading; memory judged over the last 40 s.
SHORT = Scale(zones=2, agencies=6, members=24, vessels=1000, rate=200, burst=2000, burst_every=35,
              commands_per_minute=60, duration=85, kill_at=15, restart_after=5, idle_commands=10,
              briefing_in=5 / 60, briefing_spread=0, setup_allowance=20, probe_rate=1, sample_every=10, warmup=40,
              flat_mb=20, flat_pct=10, drain_timeout=60)


def test_two_zones_under_feed_commands_briefings_and_a_sigkill_lose_and_double_nothing_memory_flat(
        tmp_path, pg_url, synapse):
    with MockSlackApi() as api:
        run, report = run_national(SHORT, synapse, api, pg_url, tmp_path)
    print("\n" + report.summary())
    assert run.kill is not None and run.takeovers, report.summary()
    assert report.ok(), report.summary()
    judged = [m for m in report.memory if m[1] == "replica"]
    assert len(judged) >= 2 and report.memory_flat, report.summary()
