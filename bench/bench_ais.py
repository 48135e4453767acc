"""Raw pyais decode rate (the floor) vs watchfloor's AIS ingest of the same sentences (decode, track, approach
check, batched storage). Goal: ingest at least 0.5x the floor.

    python bench/bench_ais.py            # 200,000 sentences
    python bench/bench_ais.py --quick    # 20,000
    python bench/bench_ais.py --udp      # only the UDP bursts (goal: 20,000 in one second without loss)
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def sentences(n: int, vessels: int = 2000) -> list[str]:
    from pyais import encode_dict

    rnd = random.Random(7)
    out: list[str] = []
    # Encoding is slow: encode a pool once and repeat it, as a feed repeats each vessel every few seconds.
    pool = []
    for v in range(vessels):
        mmsi = 366000000 + v
        for k in range(5):
            pool.append(encode_dict({"type": 1, "mmsi": mmsi, "lat": 33.0 + rnd.uniform(-2, 2),
                                     "lon": -118.3 + rnd.uniform(-2, 2), "speed": rnd.uniform(0, 20),
                                     "course": rnd.uniform(0, 359)}, sentence_type="VDM")[0])
        if v % 10 == 0:
            pool.extend(encode_dict({"type": 5, "mmsi": mmsi, "imo": 9074729, "shipname": f"SHIP {v}",
                                     "destination": "USLAX"}, sentence_type="VDM"))
    while len(out) < n:
        out.extend(pool)
    return out[:n]


def raw_rate(lines: list[str]) -> tuple[float, float]:
    """Sentences per second of wall time and of this process's CPU time."""
    from pyais.messages import AISSentence, NMEASentenceFactory

    parts: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    for line in lines:
        s = NMEASentenceFactory.produce(line.encode())
        if s.frag_cnt > 1:
            key = (s.seq_id, s.channel)
            parts.setdefault(key, []).append(s)
            if s.frag_num < s.frag_cnt:
                continue
            s = AISSentence.assemble_from_iterable(parts.pop(key))
        s.decode()
    return len(lines) / (time.perf_counter() - t0), len(lines) / (time.process_time() - c0)


def ingest_rate(lines: list[str], workdir: Path) -> tuple[float, float]:
    from watchfloor.bot.wiring import build
    from watchfloor.commands.ais_ingest import AisIngest
    from watchfloor.config import load_settings

    parts = build(settings=load_settings(None, zone=[{"code": "LALB"}]), db_url=f"sqlite:///{workdir / 'b.db'}")
    ingest = AisIngest(parts.db, parts.directory)
    ingest.resume()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    ingest.flush(now)  # warm: the first flush imports and compiles what every later one reuses
    t0, c0 = time.perf_counter(), time.process_time()
    step = timedelta(seconds=50 / 5000)
    at = now
    for i, line in enumerate(lines):
        # 5,000 sentences a second of feed time, received 50 at a time (a datagram, a read), flushed every 2 s
        # of it, as the live feed does
        if i % 50 == 0:
            at += step
        ingest.feed(line, at)
        if i % 10_000 == 9_999:
            ingest.write(ingest.take(at), at)
    ingest.flush(now + timedelta(seconds=len(lines) / 5000))
    rates = len(lines) / (time.perf_counter() - t0), len(lines) / (time.process_time() - c0)
    parts.db.dispose()
    return rates


def pipeline_rate(lines: list[str], workdir: Path, tracks_every: timedelta | None = None) -> float:
    """The live feed's path: lines handed to the decoding process in reads of 50 (5,000 a second of feed time),
    its answers applied to the tracks (approach check, history) and written every 10,000 (2 s of feed time, the
    feed's flush), the tracks as often as the live feed writes them (`tracks_every`, default the feed's own),
    until the last one is stored; sentences/s."""
    import asyncio

    from watchfloor.bot.ais.worker import DecodeWorker
    from watchfloor.bot.wiring import build
    from watchfloor.commands.ais_ingest import LIVE_TRACKS_EVERY, AisIngest
    from watchfloor.config import load_settings

    parts = build(settings=load_settings(None, zone=[{"code": "LALB"}]), db_url=f"sqlite:///{workdir / 'p.db'}")
    ingest = AisIngest(parts.db, parts.directory,
                       tracks_every=LIVE_TRACKS_EVERY if tracks_every is None else tracks_every)
    ingest.resume()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    ingest.flush(now)
    blobs = [[line.encode() for line in lines[i:i + 50]] for i in range(0, len(lines), 50)]
    done = 0

    def applied(n, outcomes, positions, statics) -> None:
        nonlocal done
        ingest.apply_decoded(outcomes, positions, statics)
        before, done = done, done + n
        if before // 10_000 != done // 10_000:
            at = now + timedelta(seconds=done / 5000)  # the feed time of the lines applied: the flush's `now`
            ingest.write(ingest.take(at), at)

    async def run() -> float:
        worker = DecodeWorker(applied, lambda n: None, max_backlog=len(lines))
        await worker.start()
        try:
            t0 = time.perf_counter()
            at = now
            for i, blob in enumerate(blobs):
                at += timedelta(seconds=50 / 5000)
                worker.submit(blob, at)
                if i % 20 == 19:
                    await asyncio.sleep(0)  # a feed's reads come one event at a time
            await worker.drain(timeout=600)
            ingest.flush(at)
            return len(lines) / (time.perf_counter() - t0)
        finally:
            await worker.stop()

    try:
        return asyncio.run(run())
    finally:
        parts.db.dispose()


def memory_for(vessels: int) -> float:
    """MB the in-memory tracks of `vessels` vessels take (a position and static data each)."""
    import tracemalloc
    from datetime import UTC, datetime

    from watchfloor.ioc.ais import PositionReport, StaticReport
    from watchfloor.ioc.tracks import Tracks

    at = datetime(2026, 12, 1, tzinfo=UTC)
    tracemalloc.start()
    tracks = Tracks()
    for v in range(vessels):
        mmsi = f"{366000000 + v}"
        tracks.apply(StaticReport(mmsi, at, imo="9074729", name=f"SHIP {v}", call_sign="WDC1234", ship_type=70,
                                  destination="USLAX", eta=at))
        tracks.apply(PositionReport(mmsi, at, 33.0, -118.0, 12.0, 45.0, 44))
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / 1e6


def import_rate(lines: list[str], workdir: Path) -> float:
    """`watchfloor import ais` of a file of these sentences (tag-block times), records per second."""
    import subprocess
    import sys

    from pyais.util import compute_checksum

    f = workdir / "feed.nmea"
    start = 1796140800
    with f.open("w") as fh:
        for i, line in enumerate(lines):
            tag = f"c:{start + i // 5000}"
            fh.write(f"\\{tag}*{compute_checksum(tag):02X}\\{line}\n")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "import", "ais", str(f), "--db",
                    f"sqlite:///{workdir / 'imp.db'}"], check=True, capture_output=True)
    return len(lines) / (time.perf_counter() - t0)


def _sender(port: int, lines: list[str], rate: int, stop, sending) -> None:
    """Send `rate` sentences a second while `sending` is set, until `stop`."""
    import socket

    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    i = 0
    while not stop.is_set():
        if not sending.wait(0.05):
            continue
        t0, sent = time.perf_counter(), 0
        while sending.is_set() and not stop.is_set():
            due = int((time.perf_counter() - t0) * rate)
            while sent < due:
                tx.sendto(lines[i % len(lines)].encode(), ("127.0.0.1", port))
                i += 1
                sent += 1
            time.sleep(0.005)


class _InProcess:
    """The comparison arm: the feed as it was before bot/ais/worker.py, every line decoded in the event loop."""

    def __init__(self, feed):
        self.feed = feed

    async def start(self) -> None:
        pass

    async def stop(self, timeout: float = 5.0) -> None:
        pass

    def submit(self, lines: list[bytes], received) -> None:
        for line in lines:
            self.feed.ingest.feed(line, received)
        self.feed.received += len(lines)
        self.feed._changed.set()


def op_log_under_feed(lines: list[str], workdir: Path, rounds: int, in_process: bool = False
                      ) -> tuple[float, float, int, int]:
    """Median `op log` round trip (engine, as `watchfloor run` calls it) without and with a 5,000/s feed, the two
    arms alternating in blocks so that a change in the machine's load weighs on both; and the lines the feed
    decoded and dropped meanwhile (the feed must keep up, not shed load, for the ratio to mean anything)."""
    import asyncio
    import multiprocessing
    import statistics

    from watchfloor.bot.ais.feed import AisFeed
    from watchfloor.bot.wiring import build
    from watchfloor.commands.message import ChatMessage
    from watchfloor.config import AisConfig, load_settings

    parts = build(settings=load_settings(None, zone=[{"code": "LALB"}]), db_url=f"sqlite:///{workdir / 'op.db'}")
    room, sender = parts.directory.add_console("LALB", "alice", "CBP", None)
    n = iter(range(10**9))

    async def timed() -> float:
        i = next(n)
        msg = ChatMessage(platform="console", room=room.id, sender=sender.id, event_id=f"b{i}", sender_name="alice",
                          text=f"!op log patrol at={33 + (i % 500) * 0.01:.2f},-118.27 start=+{1 + i % 20}h end=1h")
        t0 = time.perf_counter()
        await asyncio.to_thread(parts.engine.handle, msg)
        return time.perf_counter() - t0

    async def run() -> tuple[float, float, int, int]:
        feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=2))
        if in_process:
            feed.worker = _InProcess(feed)
        await feed.start()
        dropped_before = _dropped_total()  # (other parts of this run count theirs in the same metric)
        stop, sending = multiprocessing.Event(), multiprocessing.Event()
        proc = multiprocessing.Process(target=_sender, args=(feed.address[1], lines, 5000, stop, sending))
        proc.start()
        quiet: list[float] = []
        busy: list[float] = []
        try:
            for _ in range(max(1, rounds // 5)):
                sending.clear()
                await asyncio.sleep(0.3)  # the feed drains what was in flight
                quiet += [await timed() for _ in range(5)]
                sending.set()
                before = feed.received
                await feed.until(lambda b=before: feed.received > b + 1000, timeout=30)
                busy += [await timed() for _ in range(5)]
        finally:
            stop.set()
            proc.join()
            await feed.cleanup()
        dropped = _dropped_total() - dropped_before
        return statistics.median(quiet), statistics.median(busy), feed.received, dropped

    try:
        return asyncio.run(run())
    finally:
        parts.db.dispose()


def _burst_sender(port: int, lines: list[str], total: int, bursts: int, seconds: float, took) -> None:
    """Send `total` datagrams in `bursts` bursts spread over `seconds` (each burst as fast as one process can)."""
    import socket

    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data = [line.encode() for line in lines]
    each = total // bursts
    t0 = time.perf_counter()
    for b in range(bursts):
        for i in range(each):
            tx.sendto(data[(b * each + i) % len(data)], ("127.0.0.1", port))
        time.sleep(max(0.0, t0 + (b + 1) * seconds / bursts - time.perf_counter()))
    took.value = time.perf_counter() - t0


def udp_burst(lines: list[str], workdir: Path, total: int, bursts: int, seconds: float, busy: bool
              ) -> tuple[float, int, int]:
    """The live UDP feed (reader thread, decoding process) taking a burst: (seconds the sending took, lines
    decoded, datagrams the kernel dropped and the feed counted). `busy`: a thread holds the GIL meanwhile, as
    command handling does."""
    import asyncio
    import multiprocessing
    import threading

    from watchfloor.bot.ais.feed import AisFeed
    from watchfloor.bot.wiring import build
    from watchfloor.config import AisConfig, load_settings

    parts = build(settings=load_settings(None, zone=[{"code": "LALB"}]), db_url=f"sqlite:///{workdir / 'udp.db'}")

    async def run() -> tuple[float, int, int]:
        feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=60))
        await feed.start()
        stop = threading.Event()

        def hog() -> None:
            while not stop.is_set():
                sum(i * i for i in range(20_000))

        hogger = threading.Thread(target=hog)
        if busy:
            hogger.start()
        took = multiprocessing.Value("d", 0.0)
        proc = multiprocessing.Process(target=_burst_sender,
                                       args=(feed.address[1], lines[:2000], total, bursts, seconds, took))
        try:
            proc.start()
            await asyncio.to_thread(proc.join)
            last, since = -1, time.monotonic()
            while feed.received < total and time.monotonic() - since < 3:  # until all is decoded, or no more comes
                if feed.received != last:
                    last, since = feed.received, time.monotonic()
                await asyncio.sleep(0.05)
            await feed.flush_now()
        finally:
            stop.set()
            if busy:
                hogger.join()
            await feed.cleanup()
        return took.value, feed.received, feed.kernel_dropped

    try:
        return asyncio.run(run())
    finally:
        parts.db.dispose()


def udp_bursts(lines: list[str]) -> None:
    import logging

    logging.getLogger("watchfloor.ais").setLevel(logging.ERROR)  # the kernel's drops are printed below
    for total, bursts, seconds, busy, what in (
            (20_000, 20, 1.0, False, "20,000 in 1 s (1,000 every 50 ms)"),
            (20_000, 20, 1.0, True, "20,000 in 1 s (1,000 every 50 ms) while a thread holds the GIL"),
            (20_000, 1, 0.0, True, "20,000 at once while a thread holds the GIL"),
            (60_000, 1, 0.0, True, "60,000 at once while a thread holds the GIL")):
        with tempfile.TemporaryDirectory() as d:
            took, got, dropped = udp_burst(lines, Path(d), total, bursts, seconds, busy)
        print(f"UDP burst, {what}: sent in {took:.2f} s; received {got:,}, lost {total - got:,} "
              f"(kernel drops counted: {dropped:,})")


def tracks_every_flush(lines: list[str], rounds: int) -> None:
    """The live path writing the changed tracks at every flush (2 s of feed time; a position reaches the stored
    track within the flush) against every 10 s (the step before issue 27), arms alternating, each ÷ raw pyais."""
    raws, every_flush, every_10s = [], [], []
    for _ in range(rounds):
        raws.append(raw_rate(lines)[0])
        with tempfile.TemporaryDirectory() as d:
            every_10s.append(pipeline_rate(lines, Path(d), tracks_every=timedelta(seconds=10)))
        with tempfile.TemporaryDirectory() as d:
            every_flush.append(pipeline_rate(lines, Path(d)))
    raw, a, b = max(raws), max(every_flush), max(every_10s)
    print(f"{len(lines):,} sentences, 2,000 vessels (each track changes in every flush: the most rows per flush): "
          f"pyais decode {raw:,.0f}/s; live path, tracks every flush {a:,.0f}/s = {a / raw:.2f}x; every 10 s "
          f"{b:,.0f}/s = {b / raw:.2f}x; every flush / every 10 s = {a / b:.2f}x "
          f"(runs: {', '.join(f'{x:,.0f}' for x in every_flush)} vs {', '.join(f'{x:,.0f}' for x in every_10s)})")


def _dropped_total() -> int:
    from watchfloor.bot import metrics

    for m in metrics.REGISTRY.collect():
        for s in m.samples:
            if s.name == "watchfloor_ais_sentences_total" and s.labels.get("outcome") == "dropped":
                return int(s.value)
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-n", type=int, default=None)
    ap.add_argument("--udp", action="store_true", help="only the UDP bursts")
    ap.add_argument("--tracks", action="store_true",
                    help="only the live feed's path, its tracks written at every flush vs every 10 s of feed time")
    args = ap.parse_args()
    n = args.n or (20_000 if args.quick else 200_000)
    lines = sentences(n)
    if args.udp:
        udp_bursts(lines)
        return
    if args.tracks:
        tracks_every_flush(lines, 2 if args.quick else 3)
        return
    raws, ourss, pipes = [], [], []
    for _ in range(2 if args.quick else 3):  # alternate the arms: the machine's load changes under us
        raws.append(raw_rate(lines))
        with tempfile.TemporaryDirectory() as d:
            ourss.append(ingest_rate(lines, Path(d)))
        with tempfile.TemporaryDirectory() as d:
            pipes.append(pipeline_rate(lines, Path(d)))
    raw, ours = max(r[0] for r in raws), max(r[0] for r in ourss)
    raw_cpu, ours_cpu = max(r[1] for r in raws), max(r[1] for r in ourss)
    print(f"{n:,} sentences: pyais decode {raw:,.0f}/s; watchfloor ingest {ours:,.0f}/s; "
          f"ratio {ours / raw:.2f}x (goal >= 0.5x); in CPU time {ours_cpu / raw_cpu:.2f}x")
    print(f"live feed path (decoding process + tracks + storage): {max(pipes):,.0f}/s, "
          f"{max(pipes) / raw:.2f}x the floor")
    vessels = 2_000 if args.quick else 20_000
    print(f"memory: {memory_for(vessels):.1f} MB of tracks for {vessels:,} vessels (goal < 200 MB for 20,000)")
    udp_bursts(lines)
    with tempfile.TemporaryDirectory() as d:
        rate = import_rate(sentences(100_000 if args.quick else 1_000_000), Path(d))
    print(f"import ais: {rate:,.0f} records/s; 1,000,000 in {1_000_000 / rate:.0f} s (goal < 60 s)")
    for in_process in (False, True):
        with tempfile.TemporaryDirectory() as d:
            quiet, busy, decoded, dropped = op_log_under_feed(lines, Path(d), 10 if args.quick else 40, in_process)
        how = "decoding in the bot's process (as before bot/ais/worker.py)" if in_process else \
            "decoding in its own process"
        print(f"op log round trip, {how}: {quiet * 1000:.1f} ms without a feed, {busy * 1000:.1f} ms with "
              f"5,000 sentences/s; ratio {busy / quiet:.2f}x (goal <= 1.3x); the feed decoded {decoded:,} lines, "
              f"dropped {dropped:,}")


if __name__ == "__main__":
    main()
