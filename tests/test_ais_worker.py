"""The live feed decodes in a process of its own: it dies with the bot, and a worker that dies or hangs is started
again while the feed goes on (real processes, real signals, a real UDP socket)."""
from __future__ import annotations

import os
import signal
import socket

from pyais import encode_dict
from sqlmodel import select

from tests.helpers import child_outlives_a_sigkilled_parent, make_parts, process_gone
from watchfloor.bot.ais.feed import AisFeed
from watchfloor.config import AisConfig
from watchfloor.storage.vessel_tables import VesselRow


def _pos(mmsi: int, lat: float = 33.5) -> bytes:
    return encode_dict({"type": 1, "mmsi": mmsi, "lat": lat, "lon": -118.3, "speed": 10, "course": 0},
                       sentence_type="VDM")[0].encode()


async def test_a_killed_decoding_process_is_started_again_and_the_feed_goes_on(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=60), clock=clock)
    await feed.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tx.sendto(_pos(366000001), feed.address)
        await feed.until(lambda: feed.received == 1, timeout=20)
        first = feed.worker.process.pid
        os.kill(first, signal.SIGKILL)  # as the kernel's OOM killer would
        await feed.until(lambda: feed.worker.starts == 2 and feed.worker.process.pid != first, timeout=20)
        tx.sendto(_pos(366000002), feed.address)
        await feed.until(lambda: feed.ingest.tracks.get("366000002") is not None, timeout=20)
        assert process_gone(first)
        await feed.flush_now()
    finally:
        tx.close()
        await feed.cleanup()
    with parts.db.session() as s:
        assert {r.mmsi for r in s.exec(select(VesselRow)).all()} == {"366000001", "366000002"}
    assert process_gone(feed.worker.process.pid)  # a clean stop ends the worker too
    parts.db.dispose()


async def test_a_hung_decoding_process_is_killed_and_replaced(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=60), clock=clock)
    feed.worker.stall_seconds = 0.5
    await feed.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        await feed.until(lambda: feed.worker.process is not None, timeout=20)
        hung = feed.worker.process.pid
        os.kill(hung, signal.SIGSTOP)  # alive, never answering
        tx.sendto(_pos(366000003), feed.address)
        await feed.until(lambda: feed.worker.starts == 2, timeout=20)
        assert feed.ingest.outcomes["dropped"] == 1  # the line it sat on is counted, not lost silently
        tx.sendto(_pos(366000004), feed.address)
        await feed.until(lambda: feed.ingest.tracks.get("366000004") is not None, timeout=20)
    finally:
        tx.close()
        await feed.cleanup()
    assert process_gone(hung)
    parts.db.dispose()


_ORPHAN_CHECK = """
import asyncio, sys
from watchfloor.bot.ais.worker import DecodeWorker

async def main():
    w = DecodeWorker(lambda *a: None, lambda n: None)
    await w.start()
    print(w.process.pid, flush=True)
    await asyncio.sleep(3600)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_decoding_process_dies_with_the_bot_even_on_sigkill(tmp_path):
    assert not child_outlives_a_sigkilled_parent(tmp_path, _ORPHAN_CHECK), "the decoding process outlived the bot"


async def test_a_backlog_past_its_bound_is_dropped_and_counted_not_queued(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=60), clock=clock)
    feed.worker.max_backlog = 4
    await feed.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        os.kill(feed.worker.process.pid, signal.SIGSTOP)  # a worker far behind
        tx.sendto(b"\n".join(_pos(366000010 + i) for i in range(3)), feed.address)
        tx.sendto(b"\n".join(_pos(366000020 + i) for i in range(3)), feed.address)  # 6 > 4: two are dropped
        await feed.until(lambda: feed.ingest.outcomes["dropped"] == 2, timeout=20)
        os.kill(feed.worker.process.pid, signal.SIGCONT)
        await feed.until(lambda: feed.received == 6, timeout=20)
        assert {m for m in feed.ingest.tracks.by_mmsi} == {f"36600001{i}" for i in range(3)} | {"366000020"}
    finally:
        tx.close()
        await feed.cleanup()
    parts.db.dispose()


class Choking:
    """A decoder that fails in a way nobody foresaw on one line (the worker is given it by name)."""

    def __init__(self):
        from watchfloor.ioc.ais import Decoder

        self.real = Decoder()

    def feed(self, line, received):
        if line == b"BOOM":
            raise RecursionError("an unforeseen failure inside the decoder")
        return self.real.feed(line, received)


async def test_an_unexpected_decoding_failure_is_counted_and_the_worker_goes_on():
    from datetime import UTC, datetime

    from watchfloor.bot.ais.worker import DecodeWorker

    got: dict[str, int] = {}
    dropped: list[int] = []

    def results(n, outcomes, positions, statics):
        for k, v in outcomes.items():
            got[k] = got.get(k, 0) + v

    worker = DecodeWorker(results, dropped.append, decoder=f"{__name__}:Choking")
    await worker.start()
    try:
        worker.submit([_pos(366000001), b"BOOM", _pos(366000002)], datetime.now(UTC))
        assert await worker.drain(timeout=20)
        worker.submit([_pos(366000003)], datetime.now(UTC))
        assert await worker.drain(timeout=20)
    finally:
        await worker.stop()
    assert got == {"ok": 3, "malformed": 1} and dropped == [] and worker.starts == 1


def _gauge(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.rsplit(" ", 1)[1])


async def test_metrics_show_how_far_a_slow_decoding_process_is_behind(sqlite_url, clock):
    """An operator sees the backlog on /metrics: lines waiting and how long the oldest has waited."""
    import asyncio

    import aiohttp

    from watchfloor.bot.web.health import bound_port, start_health

    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    feed = AisFeed(parts, AisConfig(listen="udp://127.0.0.1:0", flush_seconds=60), clock=clock)
    await feed.start()
    runner = await start_health(parts, [], 0, host="127.0.0.1")
    url = f"http://127.0.0.1:{bound_port(runner)}/metrics"
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        async with aiohttp.ClientSession() as http:
            async def scrape() -> tuple[float, float]:
                async with http.get(url) as r:
                    text = await r.text()
                return (_gauge(text, "watchfloor_ais_backlog"),
                        _gauge(text, "watchfloor_ais_backlog_oldest_age_seconds"))

            assert await scrape() == (0, 0)
            os.kill(feed.worker.process.pid, signal.SIGSTOP)  # a worker that cannot keep up
            tx.sendto(b"\n".join(_pos(366000030 + i) for i in range(3)), feed.address)
            for _ in range(200):  # the reader thread hands the datagram over (no event tells the test)
                if feed.worker.backlog == 3:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.2)
            backlog, age = await scrape()
            assert backlog == 3 and 1.0 <= age < 15, (backlog, age)
            os.kill(feed.worker.process.pid, signal.SIGCONT)
            await feed.until(lambda: feed.received == 3, timeout=20)
            assert await scrape() == (0, 0)  # caught up
    finally:
        tx.close()
        await runner.cleanup()
        await feed.cleanup()
    parts.db.dispose()
