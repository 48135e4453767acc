"""The national-scale load (issue 27): one PostgreSQL database, three `watchfloor run` replicas, a real Synapse and
the Slack stand-in; every zone asked for with joint and watch rooms on both platforms, agencies and members
(tests/national_world.py); a national AIS feed (tests/national_feed.py); chat commands spread over the zones; the
zones' morning briefings falling due inside the run; one SIGKILL of a duty holder in the middle.

The run, in order:

1. idle: the same mix of commands, one at a time (each sent once the previous one is answered), no feed: the
   round trip of a quiet system, measured first;
2. load: the feed (sustained rate, bursts, probes) and commands at their rate per minute, the briefings due a few
   minutes in, the SIGKILL of the holder of a duty (default: `ais`, which the first replica holds with every
   other duty) at `kill_at`, that replica started again `restart_after` seconds later;
3. drain: until the outbox is empty and every command has its answer (or nothing more comes);
4. reading: every room as a user reads it (Slack channels as the stand-in shows them, Matrix timelines), joined
   with the outbox rows each post names (Slack message metadata, Matrix `org.watchfloor.outbox`).

Commands: `op log` (some placed to clash with another agency's operation: an overlap), `op update`, `op done`,
`target nominate` (priority high, due within hours: a coverage gap), `op log vessel=` covering a nominated
vessel (closing its gap), `conflicts ack` by a zone's supervisor; each from a member of the zone on their own
platform (Slack: a signed event to a random live replica, sent again to another when unanswered, as Slack does;
Matrix: sent to the homeserver). Which operations and conflicts exist is read from the database (the driver's
knowledge, not a check).

`Report` holds the figures and the checks: every command answered exactly once; every conflict alerted once in
each watch room of its zone; every escalation once in each district room; every briefing once in each of its
zone's rooms; every outbox row the bot sent shown exactly once where it went.
"""
from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import urllib.parse
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.fixtures.slack_api import MockSlackApi, event_body
from tests.national_feed import FeedPlan, FeedProcess, FeedResult, fleet, nm_between, probe_mmsis
from tests.national_reading import Reading, Report, pg as _pg
from tests.national_world import SECRET, Person, Roster, make_matrix, replica_config, roster, set_briefings
from tests.test_replicas import Replica, free_port, hand_over, wait_until

DUTIES = ("scheduler", "matrix", "delivery:slack", "ais")
OP_TYPES = ("boarding", "inspection", "patrol", "escort", "surveillance", "security-zone", "dive", "exercise")
MIX = (("op_log", 30), ("clash", 12), ("update", 15), ("done", 10), ("nominate", 10), ("cover", 5), ("ack", 18))
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "watchfloor" / "bench-national"


@dataclass
class Scale:
    """The knobs (bench/bench_national.py --help names each)."""
    zones: int = 37
    agencies: int = 60
    members: int = 2000
    vessels: int = 20_000
    rate: int = 3000              # AIS sentences a second, sustained
    burst: int = 20_000           # AIS sentences in one second, every burst_every seconds
    burst_every: float = 120.0
    commands_per_minute: float = 300.0
    duration: float = 480.0       # seconds of the loaded phase
    kill_at: float | None = 240.0  # seconds into the loaded phase (as the last briefings fall due); None: no kill
    kill_duty: str = "ais"        # the SIGKILL hits the holder of this duty
    restart_after: float = 10.0
    idle_commands: int = 120      # at least this many in the idle phase (more while waiting for the load's time)
    briefing_in: float = 2.0      # minutes into the loaded phase for the first zone's briefing
    briefing_spread: float = 2.0  # minutes over which the zones' briefings are spread
    setup_allowance: float = 150.0  # seconds the replicas get to start, to place the briefings after the idle phase
    matrix_share: float = 0.5     # of the members, those on Matrix
    feed: str = "mixed"           # mixed (first holder on TCP, the others UDP) | tcp | udp
    probe_rate: float = 2.0       # position probes a second
    sample_every: float = 30.0    # memory and database size samples
    warmup: float = 270.0         # memory is judged flat over the samples after this many seconds of load
    flat_mb: float = 30.0         # ... when it grows by at most this many MB
    flat_pct: float = 10.0        # ... or by at most this share of what it held after the warm-up
    drain_timeout: float = 180.0
    replicas: int = 3
    seed: int = 27


@dataclass
class Command:
    n: int
    kind: str
    phase: str
    zone: str
    room: str               # the platform's room id (Slack channel, Matrix room)
    sender: Person
    text: str
    event_id: str = ""      # what the bot claims: Slack "msg:slack:<channel>:<ts>", Matrix the event id
    sent_at: float = 0.0    # wall clock, as it was handed over
    failed: str = ""

    @property
    def platform(self) -> str:
        return self.sender.platform


# ------------------------------------------------------------------------------------------------ commands


class CommandMaker:
    """The next command: a kind drawn from MIX (one whose preconditions hold), a zone, a sender of the zone."""

    def __init__(self, r: Roster, vessels, seed: int):
        self.r = r
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=20))  # zone -> (lat, lon, h, agency)
        self.ops: dict[str, list[tuple[int, str]]] = {}       # zone -> open operations (id, agency), from the db
        self.conflicts: dict[str, list[int]] = {}             # zone -> open unacknowledged conflicts, from the db
        self.finished: set[int] = set()                       # operations we said done
        self.acked: set[int] = set()
        self.nominated: dict[str, list[tuple[int, int]]] = defaultdict(list)  # zone -> (mmsi, eta hours)
        self.covered: set[tuple[str, int]] = set()
        # Vessels a target may be put on: each zone's, whose reports stay on one side of its approach circle (a
        # fleet vessel cycles through a few points; one crossing the circle would enter it again every cycle).
        self.free: dict[str, list[int]] = defaultdict(list)
        from watchfloor.ioc.zones import get_zone

        codes = {z.code for z in r.zones}
        for v in vessels:
            if v.zone in codes:
                z = get_zone(v.zone)
                inside = {nm_between(lat, lon, z.lat, z.lon) <= 50 for lat, lon in v.points}
                if len(inside) == 1:
                    self.free[v.zone].append(v.mmsi)
        for code in self.free:
            self.rng.shuffle(self.free[code])

    def refresh(self, conn) -> None:
        ops, cfs = defaultdict(list), defaultdict(list)
        for oid, zone, agency in conn.execute(
                "SELECT id, zone_code, agency_code FROM operation WHERE status IN ('planned', 'active')"):
            ops[zone].append((oid, agency))
        for cid, zone in conn.execute("SELECT id, zone_code FROM conflict WHERE status = 'open' AND acked_by IS NULL"):
            cfs[zone].append(cid)
        with self.lock:
            self.ops, self.conflicts = dict(ops), dict(cfs)

    def make(self, n: int, phase: str) -> Command:
        with self.lock:
            z = self.rng.choice(self.r.zones)
            kinds, weights = zip(*MIX)
            for kind in self.rng.choices(kinds, weights, k=4) + ["op_log"]:
                made = getattr(self, f"_{kind}")(n, z)
                if made is not None:
                    sender, text, watch = made
                    platform = sender.platform
                    if watch:
                        room = z.slack_watch if platform == "slack" else z.matrix_watch
                    else:
                        room = z.slack_joint if platform == "slack" else z.matrix_joint
                    return Command(n, kind, phase, z.code, room, sender, text)
        raise AssertionError("op_log always makes a command")

    def _member(self, z, agency: str | None = None, not_agency: str | None = None) -> Person | None:
        people = [p for p in z.people if (agency is None or p.agency == agency)
                  and (not_agency is None or p.agency != not_agency)]
        return self.rng.choice(people) if people else None

    def _where(self, z) -> tuple[float, float]:
        from watchfloor.ioc.zones import get_zone

        zz = get_zone(z.code)
        return zz.lat + self.rng.uniform(-0.25, 0.25), zz.lon + self.rng.uniform(-0.25, 0.25)

    def _op_log(self, n: int, z):
        sender = self._member(z)
        lat, lon = self._where(z)
        h = self.rng.randint(1, 47)
        self.recent[z.code].append((lat, lon, h, sender.agency))
        return sender, (f"!op log {self.rng.choice(OP_TYPES)} at={lat:.4f},{lon:.4f} start=+{h}h end=2h "
                        f"contact=nc{n}"), False

    def _clash(self, n: int, z):
        if not self.recent[z.code]:
            return None
        lat, lon, h, agency = self.rng.choice(list(self.recent[z.code]))
        sender = self._member(z, not_agency=agency)
        if sender is None:
            return None
        return sender, f"!op log patrol at={lat:.4f},{lon:.4f} radius=1nm start=+{h}h end=2h contact=nc{n}", False

    def _open_op(self, z):
        ops = [(i, a) for i, a in self.ops.get(z.code, []) if i not in self.finished]
        if not ops:
            return None
        oid, agency = self.rng.choice(ops)
        sender = self._member(z, agency=agency)
        return (oid, sender) if sender is not None else None

    def _update(self, n: int, z):
        got = self._open_op(z)
        if got is None:
            return None
        oid, sender = got
        return sender, f"!op update OP-{oid} contact=nu{n}", False

    def _done(self, n: int, z):
        got = self._open_op(z)
        if got is None:
            return None
        oid, sender = got
        self.finished.add(oid)
        return sender, f'!op done OP-{oid} outcome="nd{n}"', False

    def _nominate(self, n: int, z):
        if not self.free[z.code]:
            return None
        mmsi = self.free[z.code].pop()
        h = self.rng.randint(2, 20)
        self.nominated[z.code].append((mmsi, h))
        return self._member(z), f'!target nominate {mmsi} priority=high eta=+{h}h reason="nt{n}"', False

    def _cover(self, n: int, z):
        todo = [(m, h) for m, h in self.nominated[z.code] if (z.code, m) not in self.covered]
        if not todo:
            return None
        mmsi, h = self.rng.choice(todo)
        self.covered.add((z.code, mmsi))
        lat, lon = self._where(z)
        return self._member(z), (f"!op log boarding vessel={mmsi} at={lat:.4f},{lon:.4f} start=+{max(1, h - 1)}h "
                                 f"end=3h contact=nc{n}"), False

    def _ack(self, n: int, z):
        open_ = [c for c in self.conflicts.get(z.code, []) if c not in self.acked]
        if not open_:
            return None
        cid = self.rng.choice(open_)
        self.acked.add(cid)
        return self.rng.choice(z.supervisors()), f"!conflicts ack CF-{cid}", True


# ------------------------------------------------------------------------------------------------ the run


class National:
    """`National(scale, synapse, api, pg_url, workdir)`, then `setup()`, `start()`, `run()` → Report, `close()`."""

    def __init__(self, scale: Scale, synapse, api: MockSlackApi, pg_url: str, workdir: Path, log=print):
        self.s, self.synapse, self.api, self.pg_url = scale, synapse, api, pg_url
        self.dir = Path(workdir)
        self.log = log
        self.rng = random.Random(scale.seed)
        self.group: list[Replica] = []
        self.commands: list[Command] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.duties_seen: dict[str, dict[str, bool]] = {}
        self.ais_counts: dict[tuple[str, int], dict[str, float]] = {}   # (replica, pid) -> outcome -> count
        self.ais_gauges: dict[str, float] = {}                          # other watchfloor_ais_* series: max seen
        self.table_sizes: list[dict[str, int]] = []                     # at the load's start and end
        self.udp_drops: dict[tuple[int, str], int] = {}                 # (port, socket inode) -> kernel drops
        self.rss: list[tuple[float, str, int, str, float]] = []         # (t, replica, pid, role, MB)
        self.cpu: list[tuple[float, str, int, float]] = []              # (t, what, pid, CPU seconds so far)
        self.loadavg: list[tuple[float, str]] = []
        self.db_size: list[tuple[float, int]] = []
        self.probe_seen: dict[str, dict[tuple[int, int], float]] = {"history": {}, "track": {}}
        self.kill: tuple[float, str, list[str]] | None = None           # (wall time, victim, duties it held)
        self.takeovers: dict[str, float] = {}                           # duty -> seconds after the kill
        self.decoder_left: list[int] = []                               # the killed replica's decoder, if it lived on
        self.load_start = self.load_end = 0.0
        self.planned_load = 0.0
        self.feed_result: FeedResult | None = None
        self.feed: FeedProcess | None = None
        self.threads: list[threading.Thread] = []
        self.slack_retries = 0  # Slack requests sent again (no answer, or not 200: a replica killed, or busy)

    # ---------------------------------------------------------------------------------------- setup

    def setup(self) -> None:
        s = self.s
        t0 = time.monotonic()
        # The feed process first: it encodes its fleet (pyais; cached between runs) while the homeserver is filled.
        tcp_port = free_port()
        udp_ports = [free_port(socket.SOCK_DGRAM) for _ in range(s.replicas)]
        listens = []
        for i in range(s.replicas):
            tcp = s.feed == "tcp" or (s.feed == "mixed" and i == 0)
            listens.append(f"tcp://127.0.0.1:{tcp_port}" if tcp else f"udp://127.0.0.1:{udp_ports[i]}")
        self.udp_ports = {f"r{i}": udp_ports[i] for i in range(s.replicas) if listens[i].startswith("udp")}
        self.listens = {f"r{i}": listens[i] for i in range(s.replicas)}
        self.feed = FeedProcess(FeedPlan(vessels=s.vessels, rate=s.rate, burst=s.burst, burst_every=s.burst_every,
                                         tcp_port=tcp_port, udp_ports=list(self.udp_ports.values()),
                                         probe_rate=s.probe_rate, probes=max(70, int(s.probe_rate * 75)),
                                         seed=s.seed, cache=str(CACHE)))
        self.feed.launch()
        self.probes = probe_mmsis(self.feed.plan.probes)
        self.roster = roster(s.zones, s.agencies, s.members, s.matrix_share, s.seed)
        make_matrix(self.synapse, self.roster, log=self.log)
        self.log(f"world: {len(self.roster.zones)} zones, {len(self.roster.agencies)} agencies, "
                 f"{len(self.roster.people)} members ({sum(p.platform == 'matrix' for p in self.roster.people)} on "
                 f"Matrix), {len(self.roster.slack_rooms())} Slack channels, {len(self.roster.matrix_rooms())} "
                 f"Matrix rooms, in {time.monotonic() - t0:.0f} s")
        self.vessels = fleet(s.vessels, s.seed)
        self.maker = CommandMaker(self.roster, self.vessels, s.seed)
        # The loaded phase starts after the replicas' start and the idle phase; the first briefing falls due
        # `briefing_in` minutes into it, on a whole minute (briefing_time is HH:MM).
        idle_guess = s.idle_commands * 0.6
        first = datetime.now(UTC) + timedelta(seconds=s.setup_allowance + idle_guess, minutes=s.briefing_in)
        first = (first + timedelta(minutes=1)).replace(second=0, microsecond=0)
        self.planned_load = first.timestamp() - s.briefing_in * 60
        self.briefings_due = set_briefings(self.roster, first, s.briefing_spread)
        self.first_briefing = self.briefings_due[0]
        (self.dir / "replicas").mkdir(parents=True, exist_ok=True)
        for i in range(s.replicas):
            setup = replica_config(self.roster, i, api_url=self.api.base_url, homeserver=self.synapse.base_url,
                                   ais_listen=listens[i], store=self.dir / f"store{i}")
            r = Replica(self.dir / "replicas", f"r{i}", self.pg_url, None, setup)
            r.config.write_text(r.config.read_text().replace("{slack_port}", str(r.slack_port)))
            self.group.append(r)

    def start(self, timeout: float = 240.0) -> None:
        """The feed process (its fleet encoded), the first replica (it takes every duty), then the others."""
        t0 = time.monotonic()
        self.feed.ready()
        self.log(f"AIS fleet of {self.s.vessels:,} vessels ready ({self.feed.pool_seconds:.0f} s to encode or load)")
        first, rest = self.group[0], self.group[1:]
        first.start()
        wait_until(lambda: all((first.duties() or {}).get(d) for d in DUTIES), "the first replica holds every duty",
                   timeout, self.group)
        for r in rest:
            r.start()
        wait_until(lambda: all(r.duties() is not None for r in self.group), "every replica answers", timeout,
                   self.group)
        wait_until(self._matrix_ready, "the bot joined every Matrix room and syncs", timeout, self.group)
        for target in (self._monitor, self._sampler, self._probe_watch, self._refresher):
            t = threading.Thread(target=target, daemon=True, name=f"national-{target.__name__.strip('_')}")
            t.start()
            self.threads.append(t)
        self.log(f"{len(self.group)} replicas up in {time.monotonic() - t0:.0f} s "
                 f"(AIS: {', '.join(f'{k} {v}' for k, v in self.listens.items())}; logs in {self.dir / 'replicas'})")

    def _matrix_ready(self) -> bool:
        with _pg(self.pg_url) as conn:
            if conn.execute("SELECT 1 FROM kv WHERE key LIKE 'matrix.sync_token:%'").fetchone() is None:
                return False
        bot, owner = self.roster.bot["user_id"], self.roster.owner["access_token"]
        for room in self.roster.matrix_rooms():
            joined = self.synapse.request("GET", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/joined_members",
                                          token=owner).get("joined", {})
            if bot not in joined:
                return False
        return True

    def live(self) -> list[Replica]:
        return [r for r in self.group if r.proc is not None and r.proc.poll() is None]

    def close(self) -> None:
        self._stop.set()
        for r in self.group:
            r.close()
        if self.feed is not None:
            self.feed.close()

    # ---------------------------------------------------------------------------------------- watching

    def _monitor(self) -> None:
        """Every second, each live replica's /metrics: its duties (and takeovers after the kill), the AIS feed's
        counts and gauges; and the kernel's drops on the UDP feed ports."""
        from prometheus_client.parser import text_string_to_metric_families

        while not self._stop.is_set():
            for r in self.live():
                asked = time.time()
                try:
                    import urllib.request

                    with urllib.request.urlopen(f"http://127.0.0.1:{r.http}/metrics", timeout=3) as resp:
                        text = resp.read().decode()
                except OSError:
                    continue
                duties, counts = {}, {}
                for fam in text_string_to_metric_families(text):
                    for smp in fam.samples:
                        if smp.name == "watchfloor_duty_held":
                            duties[smp.labels["duty"]] = smp.value == 1.0
                        elif smp.name == "watchfloor_ais_sentences_total":
                            counts[smp.labels["outcome"]] = smp.value
                        elif smp.name.startswith("watchfloor_ais_"):
                            key = smp.name + json.dumps(smp.labels, sort_keys=True)
                            with self._lock:
                                self.ais_gauges[key] = max(self.ais_gauges.get(key, 0.0), smp.value)
                with self._lock:
                    self.duties_seen[r.name] = duties
                    if counts:
                        self.ais_counts[(r.name, r.proc.pid)] = counts
                    if self.kill is not None and r.name != self.kill[1] and asked > self.kill[0]:
                        for d in self.kill[2]:
                            if d not in self.takeovers and duties.get(d):
                                self.takeovers[d] = time.time() - self.kill[0]
            self._udp_drops()
            self._stop.wait(1.0)

    def _udp_drops(self) -> None:
        ports = set(self.udp_ports.values())
        try:
            lines = Path("/proc/net/udp").read_text().splitlines()[1:]
        except OSError:
            return
        for line in lines:
            f = line.split()
            port = int(f[1].split(":")[1], 16)
            if port in ports:
                with self._lock:
                    self.udp_drops[(port, f[9])] = int(f[-1])

    def _sampler(self) -> None:
        """Every `sample_every` seconds: each replica's and its AIS decoding process's resident memory, and the
        database's size."""
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.time()
            for r in self.live():
                for pid, role in [(r.proc.pid, "replica")] + self._children(r.proc.pid):
                    mb, cpu = _rss_mb(pid), _cpu_seconds(pid)
                    if mb is not None:
                        with self._lock:
                            self.rss.append((now, r.name, pid, role, mb))
                            self.cpu.append((now, f"{r.name} {role} (pid {pid})", pid, cpu or 0.0))
            others = [("synapse", [self.synapse.proc.pid] if self.synapse.proc else []),
                      ("postgresql (all its processes)", _pids_named("postgres")),
                      ("the AIS feed process", [self.feed.proc.pid]), ("this driver", [os.getpid()])]
            with self._lock:
                for name, pids in others:
                    self.cpu += [(now, name, pid, _cpu_seconds(pid) or 0.0) for pid in pids]
                self.loadavg.append((now, " ".join(Path("/proc/loadavg").read_text().split()[:3])))
            try:
                with _pg(self.pg_url) as conn:
                    size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
                with self._lock:
                    self.db_size.append((now, size))
            except Exception as e:  # the database is the replicas' to lose, not the sampler's
                self.log(f"  (database size not read: {e})")
            next_at += self.s.sample_every
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    @staticmethod
    def _children(pid: int) -> list[tuple[int, str]]:
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid != pid:
                    continue
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            role = "ais-decoder" if "spawn_main" in cmd else ("resource-tracker" if "resource_tracker" in cmd
                                                              else "child")
            if role == "ais-decoder" and _draws(d):
                role = "drawing"  # the briefing pictures' process (bot/drawing.py): same command line
            if role != "resource-tracker":
                out.append((int(d.name), role))
        return out

    def _probe_watch(self) -> None:
        """Four times a second: which probe positions are stored, in the position history and in the track."""
        probes = self.probes
        while not self._stop.is_set():
            try:
                with _pg(self.pg_url) as conn:
                    while not self._stop.is_set():
                        now = time.time()
                        hist = conn.execute(
                            "SELECT mmsi, extract(epoch FROM at)::bigint FROM vessel_position "
                            "WHERE mmsi = ANY(%s) AND at > now() - interval '10 minutes'",
                            ([str(m) for m in probes],)).fetchall()
                        track = conn.execute(
                            "SELECT mmsi, extract(epoch FROM position_at)::bigint FROM vessel WHERE mmsi = ANY(%s)",
                            ([str(m) for m in probes],)).fetchall()
                        with self._lock:
                            for m, at in hist:
                                self.probe_seen["history"].setdefault((int(m), at), now)
                            for m, at in track:
                                if at is not None:
                                    self.probe_seen["track"].setdefault((int(m), at), now)
                        self._stop.wait(0.25)
            except Exception as e:
                if not self._stop.is_set():
                    self.log(f"  (probe watch: {str(e).splitlines()[0]}; again)")
                    self._stop.wait(1.0)

    def _refresher(self) -> None:
        while not self._stop.is_set():
            try:
                with _pg(self.pg_url) as conn:
                    while not self._stop.is_set():
                        self.maker.refresh(conn)
                        self._stop.wait(2.0)
            except Exception:
                self._stop.wait(1.0)

    # ---------------------------------------------------------------------------------------- sending

    def _send(self, cmd: Command) -> None:
        try:
            if cmd.platform == "slack":
                self._slack(cmd)
            else:
                cmd.sent_at = time.time()
                cmd.event_id = self.synapse.send_text(cmd.sender.token, cmd.room, cmd.text)
        except Exception as e:
            cmd.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    def _slack(self, cmd: Command) -> None:
        """A message event to a live replica (the load balancer's pick); unanswered, again to another, with
        Slack's retry headers, until one takes it."""
        ts = f"{int(time.time())}.{cmd.n % 1_000_000:06d}"
        cmd.event_id = f"msg:slack:{cmd.room}:{ts}"
        body = event_body({"type": "message", "channel": cmd.room, "user": cmd.sender.slack_id, "text": cmd.text,
                           "ts": ts, "event_ts": ts, "channel_type": "channel"}, event_id=f"EvNat{cmd.n}")
        cmd.sent_at = time.time()
        hand_over(body, self.live, self.rng, secret=SECRET, on_retry=self._retried)

    def _retried(self) -> None:
        with self._lock:
            self.slack_retries += 1

    def _answered(self, conn, cmd: Command) -> bool:
        row = conn.execute("SELECT status FROM outbox WHERE kind = 'reply' AND payload::json->>'reply_to' = %s",
                           (cmd.event_id,)).fetchone()
        return row is not None and row[0] == "sent"

    def idle(self) -> None:
        """The quiet baseline: commands one at a time, each once the previous one is answered; no feed."""
        t0 = time.monotonic()
        n = 0
        with _pg(self.pg_url) as conn:
            while n < self.s.idle_commands or time.time() < self.planned_load:
                if n % 10 == 0:
                    self.maker.refresh(conn)
                cmd = self.maker.make(len(self.commands) + 1, "idle")
                self.commands.append(cmd)
                self._send(cmd)
                n += 1
                deadline = time.monotonic() + 15
                while not cmd.failed and time.monotonic() < deadline and not self._answered(conn, cmd):
                    time.sleep(0.02)
                time.sleep(0.2)
        self.log(f"idle: {n} commands one at a time in {time.monotonic() - t0:.0f} s")

    def load(self) -> None:
        """The feed, the commands at their rate, the briefings, the SIGKILL; for `duration` seconds."""
        s = self.s
        self.table_sizes.append(self._table_sizes())
        self.feed.sending(True)
        self.load_start = time.time()
        late = self.load_start - self.planned_load
        self.log(f"load: started {late:+.0f} s from the plan; first briefing due in "
                 f"{self.first_briefing - self.load_start:.0f} s")
        every = 60.0 / s.commands_per_minute
        next_cmd = time.monotonic()
        end = time.monotonic() + s.duration
        kill_at = time.monotonic() + s.kill_at if s.kill_at is not None else None
        restart_at = None
        victim = None
        with ThreadPoolExecutor(12, thread_name_prefix="national-send") as pool:
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_cmd:
                    cmd = self.maker.make(len(self.commands) + 1, "load")
                    self.commands.append(cmd)
                    pool.submit(self._send, cmd)
                    next_cmd += self.rng.expovariate(1.0 / every)
                if kill_at is not None and now >= kill_at:
                    kill_at = None
                    victim = self._kill()
                    restart_at = now + s.restart_after
                if restart_at is not None and now >= restart_at:
                    restart_at = None
                    victim.start()
                    self.log(f"  {victim.name} started again")
                time.sleep(max(0.0, min(0.05, next_cmd - time.monotonic())))
            self.feed.sending(False)
            self.load_end = time.time()
        self.table_sizes.append(self._table_sizes())
        if restart_at is not None:
            victim.start()
        self.log(f"load: {sum(c.phase == 'load' for c in self.commands)} commands in {s.duration:.0f} s")

    def _table_sizes(self) -> dict[str, int]:
        with _pg(self.pg_url) as conn:
            return dict(conn.execute("SELECT relname, pg_total_relation_size(relid) "
                                     "FROM pg_catalog.pg_statio_user_tables").fetchall())

    def _kill(self) -> Replica:
        with self._lock:
            seen = dict(self.duties_seen)
        holders = [r for r in self.live() if (seen.get(r.name) or {}).get(self.s.kill_duty)]
        victim = holders[0] if holders else self.live()[0]
        held = [d for d, h in (seen.get(victim.name) or {}).items() if h]
        decoders = [pid for pid, role in self._children(victim.proc.pid) if role in ("ais-decoder", "drawing")]
        victim.kill()
        with self._lock:
            self.kill = (time.time(), victim.name, held)
        self.log(f"  SIGKILL {victim.name} at {time.time() - self.load_start:.0f} s (held {held})")
        threading.Timer(3.0, lambda: self.decoder_left.extend(p for p in decoders if _alive(p))).start()
        return victim

    def drain(self) -> float:
        """Until nothing is pending and every command has its answer stored and sent, or nothing changes."""
        t0 = time.monotonic()
        wait_until(lambda: any(r.duties() for r in self.live()), "a replica answers after the load", 60, self.group)
        last, quiet = None, time.monotonic()
        with _pg(self.pg_url) as conn:
            while time.monotonic() - t0 < self.s.drain_timeout:
                pending = conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
                answered = {r[0] for r in conn.execute(
                    "SELECT payload::json->>'reply_to' FROM outbox WHERE kind = 'reply' AND status = 'sent'")}
                missing = sum(1 for c in self.commands if not c.failed and c.event_id not in answered)
                if pending == 0 and missing == 0:
                    break
                if (pending, missing) != last:
                    last, quiet = (pending, missing), time.monotonic()
                elif pending == 0 and time.monotonic() - quiet > 20:
                    break  # nothing more comes
                time.sleep(0.5)
        time.sleep(2.0)  # a post doubled by a late retry would show by now
        return time.monotonic() - t0

    # ---------------------------------------------------------------------------------------- the whole

    def run(self) -> Report:
        self.idle()
        self.load()
        drained = self.drain()
        self.feed_result = self.feed.finish()
        self._stop.set()
        for t in self.threads:
            t.join(timeout=10)
        self.log(f"drained in {drained:.0f} s; reading the rooms")
        return Reading(self).report()


def run_national(scale: Scale, synapse, api: MockSlackApi, pg_url: str, workdir: Path, log=print
                 ) -> tuple[National, Report]:
    """The whole run: set up, start, idle, load, drain, read; the replicas and the feed stopped whatever happens."""
    run = National(scale, synapse, api, pg_url, workdir, log=log)
    try:
        run.setup()
        run.start()
        return run, run.run()
    finally:
        run.close()


def _draws(proc: Path) -> bool:
    """A spawned child that has matplotlib loaded is the drawing process, not the AIS decoder."""
    try:
        return "/matplotlib/" in (proc / "maps").read_text()
    except OSError:
        return False


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def _pids_named(name: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == name:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


