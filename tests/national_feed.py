"""The national AIS feed of the national-scale load (issue 27): vessels spread along every zone's coast, encoded
with pyais, sent with NMEA 4 tag-block times at a sustained rate with bursts, over TCP (a feed server the replica
holding the `ais` duty connects to) and UDP (one datagram per sentence to each UDP replica's own port).

The feed runs in a process of its own (`FeedProcess`), so its sending never competes with the load driver's
threads for one GIL. Besides the fleet it sends probes: position reports of vessels of their own, each stamped with
the second it is sent, whose arrival in the database the driver times (the position's lag).

Why both transports, one per replica: a replica's `[ais] listen` is one address, and only the `ais` duty's holder
listens. The replica started first (it takes every duty) connects to the TCP feed server, as a deployment behind a
national feed server would; the others listen on UDP, as behind a receiver sending datagrams to each of them. The
SIGKILL of that holder in the middle of the run moves the feed from TCP to UDP, so one run measures both paths and
the takeover between them. The non-holders' UDP ports are closed and the kernel drops what is sent there: only the
holder counts, as in the field.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

POSITIONS_PER_VESSEL = 3   # each vessel's reports cycle through this many points along its course
REPORT_SECONDS = 7.0       # the points are this far apart in time (a vessel reports every few seconds)
STATIC_EVERY = 25          # a vessel's type 5 (static data, two sentences) after every this many positions
SPREAD_NM = 70.0           # vessels lie up to this far from their zone's sector coordinates
PROBE_MMSI = 338_000_000   # probes: U.S. MID 338, apart from the fleet's 366...
FLEET_MMSI = 366_000_000
SLOW_CLIENT_BYTES = 8 << 20  # a TCP client this far behind loses lines (counted): a feed server does not wait
TICK = 0.01


@dataclass(frozen=True)
class Vessel:
    mmsi: int
    zone: str
    points: tuple[tuple[float, float], ...]  # (lat, lon) along its course, REPORT_SECONDS apart
    sog: float
    cog: float
    imo: int
    name: str


def imo_number(base: int) -> int:
    """A valid IMO number from six digits (weights 7..2, the sum's last digit is the seventh)."""
    digits = f"{base:06d}"[-6:]
    check = sum(int(d) * w for d, w in zip(digits, (7, 6, 5, 4, 3, 2))) % 10
    return int(digits + str(check))


def nm_between(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 3440.065 * math.asin(min(1.0, math.sqrt(a)))


def fleet(n: int, seed: int) -> list[Vessel]:
    """`n` vessels spread over the 37 zones' waters: a third at anchor or moored, the others under way."""
    from watchfloor.ioc.zones import all_zones

    zones = list(all_zones().values())
    rng = random.Random(seed)
    out = []
    for i in range(n):
        z = zones[i % len(zones)]
        dist, bearing = SPREAD_NM * math.sqrt(rng.random()), rng.uniform(0, 360)
        lat = z.lat + dist / 60 * math.cos(math.radians(bearing))
        lon = z.lon + dist / 60 * math.sin(math.radians(bearing)) / max(0.2, math.cos(math.radians(z.lat)))
        sog = 0.0 if rng.random() < 0.33 else round(rng.uniform(3, 22), 1)
        cog = round(rng.uniform(0, 359.9), 1)
        step = sog * REPORT_SECONDS / 3600 / 60  # degrees of latitude per report
        points = tuple((round(lat + k * step * math.cos(math.radians(cog)), 5),
                        round(lon + k * step * math.sin(math.radians(cog)) / max(0.2, math.cos(math.radians(lat))), 5))
                       for k in range(POSITIONS_PER_VESSEL))
        out.append(Vessel(FLEET_MMSI + i, z.code, points, sog, cog, imo_number(900_000 + i % 100_000), f"NAT {i:05d}"))
    return out


def probe_mmsis(count: int) -> list[int]:
    return [PROBE_MMSI + k for k in range(count)]


# ---- encoding (pyais) -------------------------------------------------------------------------------------------

def _encode_vessel(v: Vessel, seq: int) -> tuple[list[str], list[str]]:
    from pyais import encode_dict

    positions = [encode_dict({"type": 1, "mmsi": v.mmsi, "status": 1 if v.sog == 0 else 0, "lat": lat, "lon": lon,
                              "speed": v.sog, "course": v.cog, "heading": int(v.cog) % 360},
                             sentence_type="VDM", talker_id="AI")[0] for lat, lon in v.points]
    static = encode_dict({"type": 5, "mmsi": v.mmsi, "imo": v.imo, "shipname": v.name, "callsign": f"W{v.mmsi % 10**5}",
                          "ship_type": 70, "to_bow": 100, "to_stern": 20, "to_port": 10, "to_starboard": 10},
                         sentence_type="VDM", talker_id="AI", seq_id=seq % 10)
    return positions, static


def encoded_pool(vessels: list[Vessel], seed: int, cache: Path | None) -> list[tuple[list[str], list[str]]]:
    """Each vessel's position sentences and its two static ones. pyais encodes ~4,000 sentences a second here, so
    a fleet of 20,000 is kept in `cache` between runs (keyed by what made it: `fleet(len(vessels), seed)`)."""
    import pyais

    path = None
    if cache is not None:
        key = f"{len(vessels)}-s{seed}-k{POSITIONS_PER_VESSEL}-pyais{pyais.__version__}"
        path = cache / f"national-fleet-{key}.txt"
        if path.exists():
            pool = []
            for line in path.read_text().splitlines():
                parts = line.split("\t")
                pool.append((parts[:POSITIONS_PER_VESSEL], parts[POSITIONS_PER_VESSEL:]))
            if len(pool) == len(vessels):
                return pool
    pool = [_encode_vessel(v, i) for i, v in enumerate(vessels)]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("".join("\t".join(p + s) + "\n" for p, s in pool))
        tmp.replace(path)
    return pool


def _tag(body: str) -> str:
    from pyais.util import compute_checksum

    return f"\\{body}*{compute_checksum(body):02X}\\"


# ---- the feed process -------------------------------------------------------------------------------------------

@dataclass
class FeedPlan:
    vessels: int
    rate: int                 # sentences a second, sustained
    burst: int                # sentences in one second, now and then
    burst_every: float        # seconds between bursts (0: none)
    tcp_port: int             # the feed server's port (the replicas with tcp:// connect to it)
    udp_ports: list[int]      # each UDP replica's port
    probe_rate: float = 2.0   # probes a second
    probes: int = 150         # probe vessels, each reused after probes / probe_rate seconds (>= 30 s: the
    #                           history keeps one position per vessel per 30 s)
    seed: int = 27
    cache: str | None = None


@dataclass
class FeedResult:
    sent: int = 0                       # sentences sent (each once, whatever the number of paths)
    seconds: float = 0.0                # time sending
    bursts: list[tuple[float, int, float]] = field(default_factory=list)  # (wall start, sentences, seconds taken)
    tcp_connections: list[float] = field(default_factory=list)  # wall times of accepted connections
    tcp_written: int = 0                # sentences written to a connected client
    tcp_slow_dropped: int = 0           # sentences a client was too far behind to be given
    tcp_no_client: int = 0              # sentences sent while no client was connected
    udp_datagrams: int = 0
    udp_errors: int = 0
    probes: list[tuple[int, int, float]] = field(default_factory=list)  # (mmsi, tag second, wall time sent)
    per_second: dict[int, int] = field(default_factory=dict)  # sentences sent in each wall-clock second
    pool_seconds: float = 0.0


class _Clients:
    """The TCP feed server's connected clients, written to without blocking."""

    def __init__(self, port: int, result: FeedResult):
        self.result = result
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(8)
        self.server.setblocking(False)
        self.clients: list[tuple[socket.socket, bytearray]] = []

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            self.clients.append((conn, bytearray()))
            self.result.tcp_connections.append(time.time())

    def write(self, blob: bytes, lines: int) -> None:
        if not self.clients:
            self.result.tcp_no_client += lines
            return
        for conn, pending in list(self.clients):
            if len(pending) > SLOW_CLIENT_BYTES:
                self.result.tcp_slow_dropped += lines
            else:
                pending += blob
                self.result.tcp_written += lines
            self._flush(conn, pending)

    def _flush(self, conn: socket.socket, pending: bytearray) -> None:
        try:
            while pending:
                n = conn.send(pending)
                del pending[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # the replica died or closed: forget it
            conn.close()
            self.clients = [(c, p) for c, p in self.clients if c is not conn]

    def flush_all(self) -> None:
        for conn, pending in list(self.clients):
            self._flush(conn, pending)
        # a closed peer shows as readable with no data
        for conn, _ in list(self.clients):
            try:
                if conn.recv(1, socket.MSG_PEEK) == b"":
                    conn.close()
                    self.clients = [(c, p) for c, p in self.clients if c is not conn]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                conn.close()
                self.clients = [(c, p) for c, p in self.clients if c is not conn]


def feed_main(plan: FeedPlan, ctl) -> None:
    """The feed process: build the pool, say "ready", then send while told to ("start" / "stop"), until "end",
    when it sends back its `FeedResult`."""
    from pyais import encode_dict

    result = FeedResult()
    clients = _Clients(plan.tcp_port, result)  # bound before "ready": a replica may connect at once
    t0 = time.monotonic()
    vessels = fleet(plan.vessels, plan.seed)
    pool = encoded_pool(vessels, plan.seed, Path(plan.cache) if plan.cache else None)
    result.pool_seconds = time.monotonic() - t0
    probes = probe_mmsis(plan.probes)
    rng = random.Random(plan.seed + 1)
    from watchfloor.ioc.zones import all_zones

    spots = [(z.lat + 0.2, z.lon + 0.2) for z in all_zones().values()]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    targets = [("127.0.0.1", p) for p in plan.udp_ports]
    ctl.send(("ready", len(pool), result.pool_seconds))

    visits = [0] * len(pool)
    cursor = 0
    group = 0
    tag_second, tag = -1, ""
    sending = False
    started = 0.0
    sent_at_start = 0
    next_probe = 0.0
    probe_i = 0

    def lines_for(count: int, second: int) -> list[str]:
        nonlocal cursor, group, tag_second, tag
        if second != tag_second:
            tag_second, tag = second, _tag(f"c:{second}")
        out = []
        while len(out) < count:
            v = cursor
            cursor = (cursor + 1) % len(pool)
            positions, static = pool[v]
            k = visits[v]
            visits[v] = k + 1
            out.append(tag + positions[k % len(positions)])
            if k % STATIC_EVERY == STATIC_EVERY - 1:
                group = group % 99_999 + 1
                out.append(_tag(f"g:1-2-{group},c:{second}") + static[0])
                out.append(_tag(f"g:2-2-{group}") + static[1])
        return out

    def send(lines: list[str]) -> None:
        blob = ("\r\n".join(lines) + "\r\n").encode()
        clients.write(blob, len(lines))
        for line in lines:
            data = line.encode()
            for t in targets:
                try:
                    udp.sendto(data, t)
                    result.udp_datagrams += 1
                except OSError:
                    result.udp_errors += 1
        result.sent += len(lines)
        second = int(time.time())
        result.per_second[second] = result.per_second.get(second, 0) + len(lines)

    bursts: list[list[float]] = []  # [monotonic start, index in result.bursts] of this sending's bursts

    while True:
        if ctl.poll(0):
            msg = ctl.recv()
            if msg == "start" and not sending:
                sending, started, sent_at_start, bursts = True, time.monotonic(), result.sent, []
                next_probe = started
            elif msg == "stop" and sending:
                sending = False
                result.seconds += time.monotonic() - started
            elif msg == "end":
                if sending:
                    result.seconds += time.monotonic() - started
                ctl.send(("result", result))
                return
        clients.accept()
        if not sending:
            clients.flush_all()
            time.sleep(0.05)
            continue
        now = time.monotonic()
        elapsed = now - started
        # A burst: `burst` sentences within one second instead of `rate`, every `burst_every` seconds.
        if plan.burst_every > 0 and plan.burst > plan.rate and int(elapsed // plan.burst_every) > len(bursts):
            bursts.append([now, len(result.bursts)])
            result.bursts.append((time.time(), plan.burst, 0.0))
        extra = sum((plan.burst - plan.rate) * min(1.0, now - b) for b, _ in bursts)
        due = int(plan.rate * elapsed + extra) - (result.sent - sent_at_start)
        if due > 0:
            send(lines_for(min(due, 5000), int(time.time())))
        for b, i in bursts:  # a burst is out when its second is over and nothing is still due
            wall, n, took = result.bursts[int(i)]
            if not took and now - b >= 1.0 and due <= 5000:
                result.bursts[int(i)] = (wall, n, time.monotonic() - b)
        if now >= next_probe:
            next_probe += 1.0 / plan.probe_rate
            mmsi = probes[probe_i % len(probes)]
            lat, lon = spots[probe_i % len(spots)]
            probe_i += 1
            stamp = int(time.time())
            line = _tag(f"c:{stamp}") + encode_dict(
                {"type": 1, "mmsi": mmsi, "lat": lat + rng.uniform(-0.05, 0.05), "lon": lon, "speed": 10.0,
                 "course": 90.0, "heading": 90}, sentence_type="VDM", talker_id="AI")[0]
            sent_wall = time.time()
            send([line])
            result.probes.append((mmsi, stamp, sent_wall))
        clients.flush_all()
        time.sleep(TICK)


class FeedProcess:
    """The parent's handle: `launch()`, `ready()` (fleet encoded), `sending(True/False)`, `finish()` → FeedResult."""

    def __init__(self, plan: FeedPlan):
        self.plan = plan
        ctx = multiprocessing.get_context("spawn")
        self._ctl, child = ctx.Pipe()
        self.proc = ctx.Process(target=feed_main, args=(plan, child), name="national-ais-feed", daemon=True)
        self.pool_size = 0
        self.pool_seconds = 0.0

    def launch(self) -> None:
        """Start the process: it binds the TCP feed server's port and encodes its fleet."""
        self.proc.start()

    def ready(self, timeout: float = 600.0) -> None:
        """Wait until the fleet is encoded (or loaded from the cache)."""
        if not self._ctl.poll(timeout):
            raise RuntimeError(f"the AIS feed process was not ready within {timeout:g} s")
        what, self.pool_size, self.pool_seconds = self._ctl.recv()
        assert what == "ready", what

    def sending(self, on: bool) -> None:
        self._ctl.send("start" if on else "stop")

    def finish(self, timeout: float = 60.0) -> FeedResult:
        self._ctl.send("end")
        if not self._ctl.poll(timeout):
            self.proc.kill()
            raise RuntimeError("the AIS feed process did not answer")
        what, result = self._ctl.recv()
        self.proc.join(10)
        return result

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
