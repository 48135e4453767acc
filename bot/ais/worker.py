"""The live AIS feed's decoding, in a process of its own.

Decoding is most of the feed's cost; done in the bot's process it competes with command handling for the GIL, and
a watch officer's `op log` slows down while a busy feed runs. Here the event loop only hands raw lines over in
batches and applies what comes back (reports as plain tuples, outcomes as counts); pyais runs in the worker.

- The worker dies with the bot: it exits when its pipe from the bot closes (the bot exited, even by SIGKILL) or
  when its parent process is no longer its parent.
- Nothing in the feed can stop the bot: the bot's side never blocks (non-blocking pipes, a bounded backlog whose
  overflow is counted as `dropped`), a worker that dies is started again (the lines it had are counted as
  `dropped`), and one that stops answering is killed and started again.

Frames on both pipes are multiprocessing's (a 4-byte big-endian length, then a pickle), so the worker uses plain
`Connection`s while the bot reads and writes the same bytes from its event loop.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import struct
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

log = logging.getLogger("watchfloor.ais")

BATCH_LINES = 2000        # lines per frame at most
BATCH_DELAY = 0.02        # seconds a line may wait for others before its frame goes
MAX_BACKLOG = 200_000     # lines handed over and not yet answered; past this, new lines are dropped (counted)
STALL_SECONDS = 20.0      # a worker with lines and no answer for this long is stuck: killed and started again
RESTART_BACKOFF = (0.2, 30.0)
DECODER = "watchfloor.ioc.ais:Decoder"  # the class the worker decodes with (`module:name`, imported there)
_HEADER = struct.Struct("!i")


# ---- the worker's side ------------------------------------------------------------------------------------------

def _watch_parent(parent_pid: int) -> None:
    """Exit when the bot is gone (reparented), in case the pipe's end of file is not seen (blocked in a send)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(0)


def serve(lines_in, results_out, parent_pid: int, decoder: str = DECODER) -> None:
    """The worker's loop: a frame of [(received unix time, b"line\\nline..."), ...] in, one frame of
    (lines, {outcome: count}, positions, statics) out; reports as tuples, their times as unix times."""
    import importlib
    import signal

    # Ctrl-C, or a service manager stopping the whole group, reaches this process too: the bot decides when it
    # ends (by closing its pipe), so that a stopping bot does not see its worker die and start another.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    from watchfloor.ioc.ais import MALFORMED, PositionReport

    module, _, name = decoder.partition(":")
    feed = getattr(importlib.import_module(module), name)().feed
    while True:
        try:
            groups = pickle.loads(lines_in.recv_bytes())
        except (EOFError, OSError):
            return  # the bot closed its end: it stopped or died
        outcomes: dict[str, int] = {}
        positions: list[tuple] = []
        statics: list[tuple] = []
        n = 0
        for received, blob in groups:
            at = datetime.fromtimestamp(received, UTC)
            for line in blob.split(b"\n"):
                n += 1
                try:
                    outcome, reports = feed(line, at)
                except Exception:  # a sentence the decoder chokes on in a way nobody foresaw: count it, go on
                    outcome, reports = MALFORMED, ()
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                for r in reports:
                    ts = received if r.at is at else r.at.timestamp()  # a line's own time (a tag block)
                    if r.__class__ is PositionReport:
                        positions.append((r.mmsi, ts, r.lat, r.lon, r.sog, r.cog, r.heading))
                    else:
                        statics.append((r.mmsi, ts, r.imo, r.name, r.call_sign, r.ship_type, r.destination,
                                        r.eta.timestamp() if r.eta is not None else None))
        try:
            results_out.send_bytes(pickle.dumps((n, outcomes, positions, statics), protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, EOFError):
            return


# ---- the bot's side ---------------------------------------------------------------------------------------------

Results = Callable[[int, dict, list, list], None]


class DecodeWorker:
    """The bot's handle on the decoding process. `submit` lines from the event loop; `on_results(lines, outcomes,
    positions, statics)` is called in the event loop as answers come; `on_dropped(n)` for lines never decoded."""

    def __init__(self, on_results: Results, on_dropped: Callable[[int], None], *, batch_lines: int = BATCH_LINES,
                 batch_delay: float = BATCH_DELAY, max_backlog: int = MAX_BACKLOG,
                 stall_seconds: float = STALL_SECONDS, backoff: tuple[float, float] = RESTART_BACKOFF,
                 on_started: Callable[[], None] | None = None, decoder: str = DECODER):
        self.on_results = on_results
        self.decoder = decoder
        self.on_started = on_started
        self.on_dropped = on_dropped
        self.batch_lines = batch_lines
        self.batch_delay = batch_delay
        self.max_backlog = max_backlog
        self.stall_seconds = stall_seconds
        self.backoff = backoff
        self.starts = 0                        # processes started (the first and every restart)
        self.process: multiprocessing.process.BaseProcess | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out_fd = self._in_fd = -1
        self._conns: tuple = ()
        self._groups: list[tuple[float, bytes]] = []  # the frame being gathered
        self._group_lines = 0
        self._group_since = 0.0                # monotonic time its first lines were handed over
        self._frames: list[int] = []           # lines of each frame sent (or in _wbuf) and not yet answered
        self._frames_since: list[float] = []   # and when each frame's first lines were handed over
        self._wbuf = bytearray()
        self._rbuf = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._answered_at = 0.0
        self._watchdog: asyncio.Task | None = None
        self._restarting: asyncio.Task | None = None
        self._delay = backoff[0]
        self._stopping = False

    @property
    def backlog(self) -> int:
        return self._group_lines + sum(self._frames)

    def oldest_age(self) -> float:
        """Seconds since the oldest line handed over and not yet answered was handed over (0: none waits): how
        far behind the decoding is, as /metrics shows it."""
        since = self._frames_since[0] if self._frames_since else self._group_since if self._group_lines else None
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._watchdog = asyncio.create_task(self._watch(), name="ais-worker-watch")
        try:
            await self._spawn()
        except Exception:  # no process to be had now (limits, memory): the bot runs, the lines wait and retry
            log.exception("starting the AIS decoding process failed")
            self._restarting = self._loop.create_task(self._restart(self._delay), name="ais-worker-restart")
            self._delay = min(self._delay * 2, self.backoff[1])

    async def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        lines_r, lines_w = ctx.Pipe(duplex=False)
        results_r, results_w = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=serve, args=(lines_r, results_w, os.getpid(), self.decoder),
                           name="watchfloor-ais-decode",
                           daemon=True)
        await asyncio.to_thread(proc.start)
        lines_r.close()  # the worker holds these ends now; ours closed, its pipe's end of file is the bot's exit
        results_w.close()
        self.process = proc
        self.starts += 1
        self._conns = (lines_w, results_r)  # kept so the descriptors stay ours until _close
        self._out_fd, self._in_fd = lines_w.fileno(), results_r.fileno()
        os.set_blocking(self._out_fd, False)
        os.set_blocking(self._in_fd, False)
        self._loop.add_reader(self._in_fd, self._readable)
        self._answered_at = time.monotonic()
        log.debug("AIS decoding process %s started", proc.pid)
        if self.on_started is not None:
            self.on_started()

    def submit(self, lines: list[bytes], received: datetime) -> None:
        """Hand lines received at `received` over for decoding (never blocks; what overflows the backlog is
        dropped, counted)."""
        room = self.max_backlog - self.backlog
        if len(lines) > room:
            self.on_dropped(len(lines) - max(room, 0))
            lines = lines[:max(room, 0)]
            if not lines:
                return
        if not self._group_lines:
            self._group_since = time.monotonic()
        self._groups.append((received.timestamp(), b"\n".join(lines)))
        self._group_lines += len(lines)
        if self._group_lines >= self.batch_lines:
            self._send_frame()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self.batch_delay, self._send_frame)

    def _send_frame(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._groups or self._out_fd < 0:
            return  # nothing gathered, or no worker yet (a restart is under way: the frame goes when it is up)
        payload = pickle.dumps(self._groups, protocol=pickle.HIGHEST_PROTOCOL)
        self._wbuf += _HEADER.pack(len(payload))
        self._wbuf += payload
        if not self._frames:
            self._answered_at = time.monotonic()  # the stall clock starts with the first unanswered frame
        self._frames.append(self._group_lines)
        self._frames_since.append(self._group_since)
        self._groups, self._group_lines = [], 0
        self._write()

    def _write(self) -> None:
        while self._wbuf:
            try:
                n = os.write(self._out_fd, self._wbuf)
            except BlockingIOError:
                self._loop.add_writer(self._out_fd, self._write)
                return
            except OSError:  # BrokenPipeError: the worker is gone
                self._lost("its pipe closed")
                return
            del self._wbuf[:n]
        self._loop.remove_writer(self._out_fd)

    def _readable(self) -> None:
        while True:
            try:
                chunk = os.read(self._in_fd, 1 << 20)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._lost("it exited")
                return
            self._rbuf += chunk
            if len(chunk) < 1 << 20:
                break
        while len(self._rbuf) >= 4:
            (size,) = _HEADER.unpack_from(self._rbuf)
            if len(self._rbuf) < 4 + size:
                break
            frame = bytes(self._rbuf[4:4 + size])
            del self._rbuf[:4 + size]
            n, outcomes, positions, statics = pickle.loads(frame)
            if self._frames:
                self._frames.pop(0)
                self._frames_since.pop(0)
            self._answered_at = time.monotonic()
            self._delay = self.backoff[0]
            try:
                self.on_results(n, outcomes, positions, statics)
            except Exception:
                log.exception("applying decoded AIS reports failed")

    def _close(self) -> None:
        if self._in_fd >= 0:
            self._loop.remove_reader(self._in_fd)
        if self._out_fd >= 0:
            self._loop.remove_writer(self._out_fd)
        for c in self._conns:
            c.close()
        self._conns = ()
        self._out_fd = self._in_fd = -1
        self._wbuf.clear()
        self._rbuf.clear()

    def _lost(self, why: str) -> None:
        """The worker died (or was killed as stuck): what it had is dropped, a new one is started."""
        if self._out_fd < 0:
            return
        proc = self.process
        self._close()
        lost = sum(self._frames)
        self._frames.clear()
        self._frames_since.clear()
        if lost:
            self.on_dropped(lost)
        if proc is not None and proc.is_alive():
            proc.kill()
        if self._stopping:
            return
        log.warning("the AIS decoding process stopped (%s, exit code %s); %d lines dropped; restarting in %.1f s",
                    why, proc.exitcode if proc is not None else None, lost, self._delay)
        self._restarting = self._loop.create_task(self._restart(self._delay), name="ais-worker-restart")
        self._delay = min(self._delay * 2, self.backoff[1])

    async def _restart(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.process is not None:
            await asyncio.to_thread(self.process.join, 5)
        if self._stopping:
            return
        try:
            await self._spawn()
        except Exception:
            log.exception("starting the AIS decoding process failed")
            self._restarting = self._loop.create_task(self._restart(self._delay), name="ais-worker-restart")
            self._delay = min(self._delay * 2, self.backoff[1])
            return
        self._send_frame()  # what gathered meanwhile

    async def _watch(self) -> None:
        """Notice a worker that died without closing its pipe (it always does: belt and braces) or hangs."""
        while True:
            await asyncio.sleep(min(1.0, self.stall_seconds / 4))
            proc = self.process
            if self._out_fd < 0 or proc is None:
                continue
            if proc.exitcode is not None:
                self._lost("it exited")
            elif self._frames and time.monotonic() - self._answered_at > self.stall_seconds:
                self._lost(f"no answer in {self.stall_seconds:.0f} s")

    async def drain(self, timeout: float = 5.0) -> bool:
        """Send what is gathered and wait (up to `timeout`) until every line handed over is answered."""
        self._send_frame()
        deadline = time.monotonic() + timeout
        while self.backlog and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self.backlog

    async def stop(self, timeout: float = 5.0) -> None:
        """Decode what was handed over (up to `timeout`), then end the worker."""
        if self._loop is None:
            return
        if self.process is not None and self._out_fd >= 0:
            await self.drain(timeout)
        self._stopping = True
        for task in (self._watchdog, self._restarting):
            if task is not None:
                task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        proc = self.process
        self._close()  # the worker sees its pipe's end of file and returns
        if proc is not None:
            await asyncio.to_thread(proc.join, timeout)
            if proc.is_alive():
                proc.kill()
                await asyncio.to_thread(proc.join, timeout)
        left = self._group_lines + sum(self._frames)
        if left:
            self.on_dropped(left)
        self._groups, self._group_lines = [], 0
        self._frames.clear()
        self._frames_since.clear()
