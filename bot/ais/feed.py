"""The live AIS feed: NMEA sentences from UDP datagrams, or from a TCP feed server (reconnecting with backoff).

Lines are decoded in a process of their own (bot/ais/worker.py), so a busy feed does not slow down command
handling; what it sends back goes into the same `AisIngest` as `watchfloor import ais` (which decodes in its own
process), and every few seconds the changes are taken in the event loop and written in a worker thread. Nothing a
feed sends can stop the bot: bad sentences are counted by outcome (`watchfloor_ais_sentences_total{outcome}`) and
dropped, a decoding process that dies is started again, and a write that fails is logged and the feed goes on.

- UDP: a thread reads the socket, many datagrams per call, into a large receive buffer (bot/ais/udp.py); what the
  kernel still drops is counted as `dropped` at each flush.
- TCP: a feed silent for `read_timeout` (60 s) is dropped and connected again, and TCP keep-alives notice a peer
  that vanished; connecting again waits 0.5 s, doubling to 30 s, and starts over only after a connection that
  delivered data for `stable_after` (30 s): a server that accepts and closes at once is not hammered.
"""
from __future__ import annotations

import asyncio
import logging
import re
import socket
import weakref
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge

from watchfloor.commands.ais_ingest import LIVE_TRACKS_EVERY, AisIngest
from watchfloor.ioc.reports import DROPPED, MALFORMED, OUTCOMES

from watchfloor.bot import metrics
from watchfloor.bot.ais.udp import RCVBUF, UdpReceiver
from watchfloor.bot.ais.worker import DecodeWorker

log = logging.getLogger("watchfloor.ais")

SENTENCES = Counter("watchfloor_ais_sentences", "AIS lines received, by outcome: ok, part (of a multi-sentence "
                    "message), ignored (a type with no vessel data), checksum, malformed, unknown_type, orphan, "
                    "dropped (not decoded: the decoding process was overloaded or died).",
                    ["outcome"], registry=metrics.REGISTRY)
for _o in OUTCOMES:
    SENTENCES.labels(outcome=_o)  # every outcome present from the start, at 0
EVICTED = Counter("watchfloor_ais_tracks_evicted", "Vessel tracks that left memory (their stored rows stay), by "
                  "reason: retain (not heard for retain_days), cap (past the most the feed keeps).", ["reason"],
                  registry=metrics.REGISTRY)
for _r in ("retain", "cap"):
    EVICTED.labels(reason=_r)
TRACKS = Gauge("watchfloor_ais_tracks", "Vessel tracks the AIS feed keeps in memory.", registry=metrics.REGISTRY)
# How far the decoding process is behind, read when /metrics is scraped (a backlog that only grows, or lines waiting
# for seconds, is a feed faster than this machine decodes; past MAX_BACKLOG lines they are counted `dropped`).
_WORKERS: weakref.WeakSet = weakref.WeakSet()  # the decoding workers of this process's feeds
BACKLOG = Gauge("watchfloor_ais_backlog", "AIS lines handed to the decoding process and not yet decoded.",
                registry=metrics.REGISTRY)
BACKLOG.set_function(lambda: sum(w.backlog for w in list(_WORKERS)))
BACKLOG_AGE = Gauge("watchfloor_ais_backlog_oldest_age_seconds", "Seconds the oldest AIS line not yet decoded "
                    "has waited (0 when none waits).", registry=metrics.REGISTRY)
BACKLOG_AGE.set_function(lambda: max((w.oldest_age() for w in list(_WORKERS)), default=0.0))
MAX_LINE = 1024  # an NMEA sentence is at most 82 characters; a tag block adds a few dozen
READ_TIMEOUT = 60.0   # seconds of silence on a TCP feed before it is dropped and connected again
STABLE_AFTER = 30.0   # a TCP connection that delivered data this long resets the reconnect backoff
KEEPALIVE = (30, 10, 3)  # TCP keep-alive: first probe after 30 s idle, then every 10 s, 3 unanswered = dead


def _count(outcome: str, n: int) -> None:
    SENTENCES.labels(outcome=outcome).inc(n)


def _evicted(reason: str, n: int) -> None:
    EVICTED.labels(reason=reason).inc(n)


def parse_listen(listen: str) -> tuple[str, str, int]:
    m = re.match(r"^(udp|tcp)://\[?([^\]\s]+?)\]?:(\d{1,5})$", listen.strip())
    if m is None:
        raise ValueError(f"ais.listen: '{listen}' is not udp://host:port or tcp://host:port")
    return m[1], m[2], int(m[3])


class AisFeed:
    def __init__(self, parts, config, *, wake: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), backoff: tuple[float, float] = (0.5, 30.0)):
        self.parts = parts
        self.config = config
        self.scheme, self.host, self.port = parse_listen(config.listen)
        self.clock = clock
        self.wake = wake
        self.backoff = backoff
        self.read_timeout = READ_TIMEOUT
        self.stable_after = STABLE_AFTER
        self.rcvbuf = RCVBUF
        self.ingest = AisIngest(parts.db, parts.directory, on_outcome=_count, on_evicted=_evicted, clock=clock,
                                tracks_every=LIVE_TRACKS_EVERY)
        self.worker = DecodeWorker(self._decoded, self._dropped, on_started=lambda: self._changed.set())
        _WORKERS.add(self.worker)
        self.received = 0       # lines decoded (or dropped) and applied to the ingest
        self.connections = 0    # TCP connections made (the first and every reconnect)
        self.kernel_dropped = 0  # UDP datagrams the kernel dropped (no room in the receive buffer)
        self.keepalive = False  # TCP keep-alive on, as read back from the connected socket
        self._changed = asyncio.Event()
        self._udp: UdpReceiver | None = None
        self._drops_seen = 0
        self._listening: list[asyncio.Task] = []
        self._flush_lock = asyncio.Lock()
        self.leading = False
        self._duty_held: Callable[[], bool] | None = None  # None: not attached to the duties, listens once started

    def attach(self, duties) -> None:
        """Listen while this replica holds the `ais` duty (bot/duties.py): another replica takes the feed over
        when this one dies, freezes or is cut off from the database."""
        from watchfloor.bot.duties import AIS

        duties.add(AIS, on_take=self._listen, on_lose=self._unlisten)
        self._duty_held = lambda: duties.held(AIS)

    @property
    def holds(self) -> bool:
        """Receiving the feed, and the duty's lease still good (see bot/duties.py)."""
        return self.leading and (self._duty_held is None or self._duty_held())

    @property
    def address(self) -> tuple[str, int]:
        """Where the UDP listener is bound (the port the OS chose when the config said 0)."""
        if self._udp is not None:
            return self._udp.address
        return self.host, self.port

    async def start(self) -> None:
        """Receive the feed now; attached to the duties, it listens when the `ais` duty is taken instead."""
        if self._duty_held is None:
            await self._listen()

    async def _listen(self) -> None:
        # A replica taking over carries on from the stored tracks; what this one could not write before it lost
        # the lead (notices, positions) is still pending and goes with its next flush.
        await asyncio.to_thread(self.ingest.resume)
        await self.worker.start()
        loop = asyncio.get_running_loop()
        self._listening = []
        if self.scheme == "udp":
            self._udp = UdpReceiver(self.host, self.port, self._datagrams, self.rcvbuf)
            self._drops_seen = self._udp.dropped() or 0
            self._udp.start(loop)
        else:
            self._listening.append(asyncio.create_task(self._tcp(), name="ais-tcp"))
        self._listening.append(asyncio.create_task(self._flusher(), name="ais-flush"))
        self.leading = True
        self._changed.set()
        log.info("AIS feed on %s://%s:%s", self.scheme, *self.address)

    async def _unlisten(self) -> None:
        if not self.leading:
            return  # given up already (cleanup, then the duties stopping)
        self.leading = False
        for task in self._listening:
            task.cancel()
        await asyncio.gather(*self._listening, return_exceptions=True)
        self._listening = []
        if self._udp is not None:
            self._count_kernel_drops()
            self._udp.close()  # what its thread read last is handed over first
            self._udp = None
        await self.worker.stop()  # what it was given is decoded and applied first
        try:
            await self.flush_now()
        except Exception:
            log.exception("last AIS flush failed")

    def _datagrams(self, datagrams: list[bytes]) -> None:
        self.lines(b"\n".join(datagrams).split(b"\n"))

    def _count_kernel_drops(self) -> None:
        total = self._udp.dropped() if self._udp is not None else None
        if total is not None and total > self._drops_seen:
            n, self._drops_seen = total - self._drops_seen, total
            self.kernel_dropped += n
            self.ingest.outcomes[DROPPED] += n
            log.warning("AIS: the kernel dropped %d datagrams (receive buffer full)", n)

    def lines(self, lines) -> None:
        """Hand received lines to the decoding process (their results come back to `_decoded`)."""
        keep = []
        for line in lines:
            if len(line) > MAX_LINE:
                self.ingest.outcomes[MALFORMED] += 1
                continue
            line = line.strip()
            if line:
                keep.append(line)
        if keep:
            self.worker.submit(keep, self.clock())

    def _decoded(self, n: int, outcomes: dict, positions: list, statics: list) -> None:
        self.ingest.apply_decoded(outcomes, positions, statics)
        self.received += n
        self._changed.set()

    def _dropped(self, n: int) -> None:
        self.ingest.outcomes[DROPPED] += n
        self.received += n
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until `predicate()` holds after some lines or a flush (tests, start-up checks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("AIS feed: condition not met in time")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def flush_now(self, everything: bool = True) -> dict[str, int]:
        async with self._flush_lock:
            now = self.clock()
            self._count_kernel_drops()
            batch = self.ingest.take(now, everything)
            try:
                done = await asyncio.to_thread(self.ingest.write, batch, now)
            except Exception:
                self.ingest.restore(batch)  # nothing is lost while the database is away: the next flush retries
                raise
        if done["notices"] and self.wake is not None:
            self.wake()
        TRACKS.set(len(self.ingest.tracks))
        self._changed.set()
        return done

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_seconds)
            try:
                await self.flush_now(everything=False)
            except Exception as e:  # the database may be away for a while: keep the feed, try again next time
                log.warning("AIS flush failed: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)

    async def _tcp(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.backoff[0]
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the task's cancellation when
                # the read completes at the same moment, and the feed would never stop.
                async with asyncio.timeout(self.read_timeout):
                    reader, writer = await asyncio.open_connection(self.host, self.port, limit=64 * 1024)
            except (OSError, TimeoutError) as e:
                log.warning("AIS feed %s:%s unreachable (%s); retrying in %.1f s", self.host, self.port,
                            e or "timed out", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            self.connections += 1
            self._keep_alive(writer)
            self._changed.set()
            opened, delivered = loop.time(), False
            try:
                tail = b""
                while True:
                    # Read what came, not line by line: the event loop's cost per line is what it adds to commands.
                    try:
                        async with asyncio.timeout(self.read_timeout):
                            chunk = await reader.read(1 << 16)
                    except TimeoutError:
                        log.warning("AIS feed %s:%s silent for %.0f s; connecting again", self.host, self.port,
                                    self.read_timeout)
                        break
                    if not chunk:
                        break
                    delivered = True
                    *whole, tail = (tail + chunk).split(b"\n")
                    if len(tail) > MAX_LINE:  # no end of line in sight: garbage, skip to the next newline
                        whole.append(tail)
                        tail = b""
                    self.lines(whole)
            except (OSError, asyncio.IncompleteReadError) as e:
                log.warning("AIS feed connection lost: %s", e)
            finally:
                writer.close()
            if delivered and loop.time() - opened >= self.stable_after:
                delay = self.backoff[0]  # it worked for a while: this is a new trouble, start the backoff over
            log.info("AIS feed %s:%s closed; reconnecting in %.1f s", self.host, self.port, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff[1])

    def _keep_alive(self, writer) -> None:
        """TCP keep-alives, so that a peer that vanished (a cut link, a crashed host) is noticed by the kernel even
        before the read timeout."""
        sock = writer.get_extra_info("socket")
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for opt, value in zip(("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"), KEEPALIVE):
                if hasattr(socket, opt):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
            self.keepalive = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
        except OSError as e:
            log.warning("AIS feed: TCP keep-alive not set: %s", e)

    async def cleanup(self) -> None:
        """Stop receiving and write what is still in memory; the duties then let another replica take the feed."""
        await self._unlisten()
