"""The live feed on real sockets: UDP datagrams to a running listener, a TCP feed server that drops and comes
back; garbage and bad checksums counted and dropped; one approach notice in the zone's console room."""
from __future__ import annotations

import asyncio
import json
import re
import socket

from pyais import encode_dict
from sqlmodel import select

from tests.helpers import ConsoleUser, make_parts
from watchfloor.bot import metrics
from watchfloor.bot.ais.feed import AisFeed
from watchfloor.bot.duties import Duties
from watchfloor.config import AisConfig
from watchfloor.ioc.zones import get_zone
from watchfloor.storage.tables import OutboxRow
from watchfloor.storage.vessel_tables import VesselRow

LALB = get_zone("LALB")
MMSI = 366123456


def _pos(lat: float, mmsi: int = MMSI) -> bytes:
    return encode_dict({"type": 1, "mmsi": mmsi, "lat": lat, "lon": LALB.lon, "speed": 14, "course": 0},
                       sentence_type="VDM")[0].encode()


def _count(outcome: str) -> float:
    m = re.search(rf'watchfloor_ais_sentences_total{{outcome="{outcome}"}} ([0-9.e+]+)',
                  metrics.exposition().decode())
    return float(m.group(1)) if m else 0.0


async def test_udp_feed_builds_tracks_and_posts_one_approach_notice(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB", "approach_nm": 40}])
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    assert alice.say(f"!target nominate {MMSI} priority=high").startswith("TGT-1")
    feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=60), clock=clock)
    await feed.start()
    bad_before, garbage_before = _count("checksum"), _count("malformed")
    part1, part2 = (s.encode() for s in encode_dict(
        {"type": 5, "mmsi": MMSI, "imo": 9074729, "shipname": "EVER GIVEN", "destination": "USLAX"},
        sentence_type="VDM"))
    good = _pos(LALB.lat - 0.5)
    datagrams = [
        _pos(LALB.lat - 1.5),                                # 90 nm out
        part1,                                               # a two-part static message split across datagrams
        part2,
        b"this is not NMEA\r\n" + good[:-2] + b"00",          # garbage and a bad checksum in one datagram
        _pos(LALB.lat - 0.6) + b"\r\n" + _pos(LALB.lat - 0.5),  # into the 40 nm approach, then further in
        _pos(LALB.lat - 0.4),
    ]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for d in datagrams:
            tx.sendto(d, feed.address)
        await feed.until(lambda: feed.received >= 8, timeout=10)
        await feed.flush_now()
    finally:
        tx.close()
        await feed.cleanup()
    with parts.db.session() as s:
        vessel = s.get(VesselRow, str(MMSI))
        assert (vessel.name, vessel.imo) == ("EVER GIVEN", "9074729")
        assert round(vessel.lat, 2) == round(LALB.lat - 0.4, 2)
        notices = s.exec(select(OutboxRow).where(OutboxRow.kind == "notice")).all()
    assert len(notices) == 1 and notices[0].room == "console:LALB"
    text = json.loads(notices[0].payload)["text"]
    assert text.startswith("⚓ TGT-1 EVER GIVEN entered the LALB approach, 36 nm out, ETA ") and "(AIS)" in text
    assert _count("checksum") == bad_before + 1 and _count("malformed") == garbage_before + 1


async def test_tcp_feed_reconnects_when_the_server_drops(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    served = asyncio.Event()
    connections = 0

    async def serve(reader, writer):
        nonlocal connections
        connections += 1
        mmsi = 366000000 + connections
        writer.write(_pos(33.0, mmsi) + b"\r\n" + _pos(33.1, mmsi) + b"\r\n")
        await writer.drain()
        if connections == 1:
            writer.close()  # the feed server drops the first connection
        else:
            served.set()
            await asyncio.sleep(3600)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    feed = AisFeed(parts, AisConfig(listen=f"tcp://127.0.0.1:{port}", flush_seconds=60), clock=clock,
                   backoff=(0.01, 0.05))
    await feed.start()
    try:
        await feed.until(lambda: feed.received >= 4 and feed.connections >= 2, timeout=10)
        await feed.flush_now()
    finally:
        await feed.cleanup()
        server.close()
    with parts.db.session() as s:
        assert {r.mmsi for r in s.exec(select(VesselRow)).all()} == {"366000001", "366000002"}


def _free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_watchfloor_run_listens_for_ais_and_announces_the_approach(tmp_path):
    """The whole service: `watchfloor run` with [ais], a ship sailing in on a real UDP socket, /metrics counting."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    db_url = f"sqlite:///{tmp_path / 'wf.db'}"
    http, udp = _free_port(), _free_port(socket.SOCK_DGRAM)
    parts = make_parts(db_url, zone=[{"code": "LALB"}])
    ConsoleUser(parts, "LALB", "alice", "CBP").say(f"!target nominate {MMSI} priority=high")
    parts.db.dispose()
    config = tmp_path / "wf.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[service]\nport = {http}\n'
                      f'[ais]\nlisten = "udp://127.0.0.1:{udp}"\nflush_seconds = 0.2\n[[zone]]\ncode = "LALB"\n')
    proc = subprocess.Popen([sys.executable, "-m", "watchfloor.bot.cli", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=2) as r:
                return r.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return None

    def wait_for(check, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if check():
                return
            time.sleep(0.1)  # another process: there is nothing to wait on but its answers
        raise AssertionError(f"{what}: {proc.stderr.read() if proc.poll() is not None else 'timed out'}")

    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        wait_for(lambda: scrape() is not None, "the service did not start")
        good = _pos(LALB.lat - 0.5)

        def first_position_counted() -> bool:
            # The HTTP server may answer before the feed's socket is bound: say it again until it is heard.
            tx.sendto(_pos(LALB.lat - 1.5), ("127.0.0.1", udp))
            m = re.search(r'watchfloor_ais_sentences_total{outcome="ok"} ([0-9.]+)', scrape() or "")
            return m is not None and float(m.group(1)) >= 1

        wait_for(first_position_counted, "the first position was not counted")
        for d in (b"junk", good[:-2] + b"00", _pos(LALB.lat - 0.6), _pos(LALB.lat - 0.5)):
            tx.sendto(d, ("127.0.0.1", udp))

        def noticed() -> bool:
            with parts.db.session() as s:
                return s.exec(select(OutboxRow).where(OutboxRow.kind == "notice")).first() is not None

        wait_for(noticed, "no approach notice")
        text = scrape()
        assert 'watchfloor_ais_sentences_total{outcome="checksum"} 1.0' in text
        assert 'watchfloor_ais_sentences_total{outcome="malformed"} 1.0' in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        tx.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with parts.db.session() as s:
        rows = s.exec(select(OutboxRow).where(OutboxRow.kind == "notice")).all()
    assert len(rows) == 1 and "TGT-1" in json.loads(rows[0].payload)["text"]
    parts.db.dispose()


async def test_one_replica_receives_the_feed_and_another_takes_over(pg_url, clock):
    """PostgreSQL replicas: the feed's lock decides who listens; when the holder stops, another one does."""
    a_parts = make_parts(pg_url, clock=clock, zone=[{"code": "LALB"}])
    b_parts = make_parts(pg_url, clock=clock, zone=[{"code": "LALB"}])
    config = AisConfig(listen="udp://127.0.0.1:0", flush_seconds=60)
    a = AisFeed(a_parts, config, clock=clock)
    b = AisFeed(b_parts, config, clock=clock)
    duties_a, duties_b = Duties(a_parts.db, retry_seconds=0.05), Duties(b_parts.db, retry_seconds=0.05)
    a.attach(duties_a)
    b.attach(duties_b)
    await duties_a.start()
    await a.until(lambda: a.leading, timeout=10)
    await duties_b.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tx.sendto(_pos(33.0, 366000001), a.address)
        await a.until(lambda: a.received == 1, timeout=10)
        assert not b.leading
        await duties_a.stop()  # a clean stop hands the feed over (a killed one: once its session ends)
        await b.until(lambda: b.leading, timeout=10)
        tx.sendto(_pos(33.1, 366000002), b.address)
        await b.until(lambda: b.received == 1, timeout=10)
        await b.flush_now()
    finally:
        tx.close()
        await duties_b.stop()
        await duties_a.stop()
    with b_parts.db.session() as s:
        assert {r.mmsi for r in s.exec(select(VesselRow)).all()} == {"366000001", "366000002"}
    a_parts.db.dispose()
    b_parts.db.dispose()


async def test_a_flush_while_the_database_is_away_loses_nothing(pg_url, clock):
    """PostgreSQL behind a proxy the test cuts: the approach notice and the track wait for the next flush."""
    import pytest

    from tests.fixtures.tcp_proxy import tcp_proxy

    with tcp_proxy(("127.0.0.1", 5432)) as proxy:
        parts = make_parts(proxy.url_for(pg_url), clock=clock, zone=[{"code": "LALB"}])
        ConsoleUser(parts, "LALB", "alice", "CBP").say(f"!target nominate {MMSI} priority=high")
        feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=60), clock=clock)
        duties = Duties(parts.db, retry_seconds=0.05)
        feed.attach(duties)
        await duties.start()
        await feed.until(lambda: feed.leading, timeout=10)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tx.sendto(_pos(LALB.lat - 1.5), feed.address)
            await feed.until(lambda: feed.received == 1, timeout=10)
            await feed.flush_now()
            proxy.cut()
            tx.sendto(_pos(LALB.lat - 0.5), feed.address)
            await feed.until(lambda: feed.received == 2, timeout=10)
            with pytest.raises(Exception):
                await feed.flush_now()
            proxy.restore()
            await feed.flush_now()  # (or the feed's own flush, when it noticed its lock gone and took it again)
        finally:
            tx.close()
            await feed.cleanup()
            await duties.stop()
        with parts.db.session() as s:
            notices = s.exec(select(OutboxRow).where(OutboxRow.kind == "notice")).all()
            assert round(s.get(VesselRow, str(MMSI)).lat, 2) == round(LALB.lat - 0.5, 2)
        assert len(notices) == 1 and "TGT-1" in json.loads(notices[0].payload)["text"]
        parts.db.dispose()


# --- a live feed you can trust: bursts, drops, stalls -----------------------------------------------------------

_BURSTS = """
import socket, sys, time
host, port, total, bursts, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
lines = sys.stdin.buffer.read().split()
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
each = total // bursts
t0 = time.perf_counter()
for b in range(bursts):
    for i in range(each):  # a burst as fast as this process can send it
        tx.sendto(lines[(b * each + i) % len(lines)], (host, port))
    time.sleep(max(0.0, t0 + (b + 1) * seconds / bursts - time.perf_counter()))
print(f"{time.perf_counter() - t0:.3f}")
"""


def send_bursts(address, lines: list[bytes], total: int, bursts: int, seconds: float) -> float:
    """Send `total` datagrams from another process in `bursts` bursts spread over `seconds`; the time it took."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _BURSTS, address[0], str(address[1]), str(total), str(bursts),
                           str(seconds)], input=b"\n".join(lines), capture_output=True, check=True)
    return float(done.stdout)


async def _settled(feed, value, at_least: int, quiet: float = 3.0, timeout: float = 120.0) -> int:
    """Wait until `value()` reaches `at_least`, or has not grown for `quiet` seconds; its last value."""
    loop = asyncio.get_running_loop()
    deadline, last, since = loop.time() + timeout, -1, loop.time()
    while loop.time() < deadline:
        now = value()
        if now >= at_least:
            return now
        if now != last:
            last, since = now, loop.time()
        elif loop.time() - since > quiet:
            return now
        await asyncio.sleep(0.1)
    return value()


async def test_udp_takes_a_burst_of_20000_datagrams_in_one_second_without_loss(sqlite_url, clock):
    """While the bot is busy (a thread holding the GIL as a command being handled does): the socket is read by a
    thread of its own, many datagrams per call, into a large receive buffer."""
    import threading

    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=60), clock=clock)
    await feed.start()
    pool = [_pos(33.0 + i / 1000, 366000000 + i) for i in range(500)]
    dropped_before = _count("dropped")
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(i * i for i in range(20_000))  # pure Python: the GIL is taken from the other threads

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        took = await asyncio.to_thread(send_bursts, feed.address, pool, 20_000, 20, 1.0)  # 1,000 every 50 ms
        received = await _settled(feed, lambda: feed.received, 20_000)
        await feed.flush_now()
    finally:
        stop.set()
        worker.join()
        await feed.cleanup()
    assert took < 1.5
    assert received == 20_000 and feed.ingest.outcomes["dropped"] == 0
    assert _count("dropped") == dropped_before and len(feed.ingest.tracks) == 500
    parts.db.dispose()


async def test_what_the_kernel_drops_is_counted(sqlite_url, clock):
    """A receive buffer too small for the burst: what the kernel could not queue is counted as dropped, so that
    received and dropped add up to what was sent."""
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=60), clock=clock)
    feed.rcvbuf = 4096  # a few datagrams (asking for so little is what makes the kernel drop here)
    await feed.start()
    pool = [_pos(33.0 + i / 1000, 366000000 + i) for i in range(100)]
    dropped_before = _count("dropped")
    try:
        await asyncio.to_thread(send_bursts, feed.address, pool, 20_000, 1, 0.0)  # all at once
        await _settled(feed, lambda: feed.received + feed.ingest.outcomes["dropped"], 20_000)
        await feed.flush_now()
        counted = _count("dropped") - dropped_before
    finally:
        await feed.cleanup()
    assert counted > 0 and feed.received + counted == 20_000, (feed.received, counted)
    parts.db.dispose()


async def _tcp_feed(parts, clock, serve, backoff):
    """A feed server on loopback answering each connection with `serve`, and a feed (not started) connecting to it."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, AisFeed(parts, AisConfig(listen=f"tcp://127.0.0.1:{port}", flush_seconds=60), clock=clock,
                           backoff=backoff)


async def test_a_tcp_feed_gone_silent_is_dropped_and_reconnected(sqlite_url, clock):
    """A feed server that stops sending without closing (a half-open connection, a hung server): after the read
    timeout the feed connects again."""
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    connections = 0

    async def serve(reader, writer):
        nonlocal connections
        connections += 1
        writer.write(_pos(33.0, 366000000 + connections) + b"\r\n")
        await writer.drain()
        await asyncio.sleep(3600)  # then nothing, and the connection stays open

    server, feed = await _tcp_feed(parts, clock, serve, (0.01, 0.05))
    feed.read_timeout = 0.5
    await feed.start()
    try:
        await feed.until(lambda: feed.received >= 2 and feed.connections >= 2, timeout=15)
        assert feed.keepalive  # and the kernel probes a connection whose peer vanished
    finally:
        await feed.cleanup()
        server.close()
    parts.db.dispose()


async def test_a_server_that_accepts_and_closes_is_retried_with_backoff_reset_by_a_good_connection(sqlite_url,
                                                                                                 clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    loop = asyncio.get_running_loop()
    opened: list[float] = []
    closed: list[float] = []
    good = False

    async def serve(reader, writer):
        opened.append(loop.time())
        try:
            if good:  # delivers a position every 0.1 s for a while, then drops
                for i in range(10):
                    writer.write(_pos(33.0 + i / 100, 366000001) + b"\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.1)
        except ConnectionError:
            pass  # the feed stopping
        closed.append(loop.time())
        writer.close()

    server, feed = await _tcp_feed(parts, clock, serve, (0.05, 0.4))
    feed.stable_after = 0.5
    await feed.start()
    try:
        await asyncio.sleep(2.5)
        gaps = [b - a for a, b in zip(opened, opened[1:])]
        assert len(opened) <= 10, gaps  # without backoff: every 0.05 s, some 50 times
        assert gaps[0] < 0.2 and gaps[2] >= 0.18 and all(g >= 0.35 for g in gaps[3:]), gaps
        good = True
        n = len(opened)
        await feed.until(lambda: len(closed) > n, timeout=10)  # a connection that delivered for a second
        await feed.until(lambda: len(opened) > n + 1, timeout=10)
        assert opened[n + 1] - closed[n] < 0.2  # the backoff started over
    finally:
        await feed.cleanup()
        server.close()
    parts.db.dispose()


async def test_a_moved_vessel_reaches_its_stored_track_at_the_next_flush(sqlite_url, clock):
    """The contract's national figure: a position in the stored track within 5 s. The live feed writes the
    changed tracks at every flush (here every 0.2 s), not once in 10 s of feed time."""
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=0.2), clock=clock)
    await feed.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def stored_lat(within: float) -> float | None:
        loop = asyncio.get_running_loop()
        deadline, lat = loop.time() + within, None
        while loop.time() < deadline:
            with parts.db.session() as s:
                row = s.get(VesselRow, str(MMSI))
                lat = row.lat if row is not None else None
            if lat is not None and abs(lat - want) < 1e-3:
                return lat
            await asyncio.sleep(0.05)
        return lat

    try:
        want = LALB.lat - 1.0
        tx.sendto(_pos(want), feed.address)
        assert await stored_lat(10) == want
        clock.advance(seconds=3)  # 3 s of feed time later the ship reports further in
        want = LALB.lat - 0.9
        tx.sendto(_pos(want), feed.address)
        got = await stored_lat(3)  # a dozen flushes of wall time
        assert got is not None and abs(got - want) < 1e-3, f"stored track still at {got}, the ship is at {want}"
    finally:
        tx.close()
        await feed.cleanup()
    parts.db.dispose()
