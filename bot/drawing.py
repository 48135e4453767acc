"""The briefing's pictures, drawn in a process of their own.

A timeline picture is a few tenths of a second of matplotlib, Python that holds the GIL the whole time. The
scheduler's briefing jobs run in the bot's threads, so when the zones' morning briefings fell due together the
threads answering chat commands waited for the GIL: the national run (issue 27) had commands at 1.2 s median
and 7.1 s at worst in the briefings' 15 seconds, 0.3 s in the others. Drawn here, the picture takes the other
core and the job's thread only waits for the PNG (waiting releases the GIL).

- One process per replica, started at its first picture and kept (importing matplotlib costs most of a second),
  drawing one picture at a time at a lower priority (nice 10): the briefings queue for it rather than for the
  bot's CPU.
- It dies with the bot: it exits as soon as the bot is no longer its parent (SIGKILL included), and
  `shutdown()` ends it when the bot stops.
- When no process can be had, or it dies in the middle of a picture, the picture is drawn in the calling thread
  as before (logged): a briefing never goes without its picture because of this.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

log = logging.getLogger("watchfloor.drawing")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


# ---- the drawing process's side ---------------------------------------------------------------------------------

def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(0)


def _start(parent_pid: int) -> None:
    """In the drawing process, once: outlive nobody, leave stopping to the bot, load matplotlib before any
    picture is asked for."""
    import signal

    # Ctrl-C, or a service manager stopping the whole group, reaches this process too: the bot ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    # A picture can wait a few seconds; a command cannot: on a busy machine the cores go to the bot and the
    # database first.
    os.nice(10)
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def _draw(data: dict[str, Any], colours: dict[str, str] | None):
    from watchfloor.bot.timeline import timeline

    return timeline(data, colours)


# ---- the bot's side ---------------------------------------------------------------------------------------------

def _the_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            import multiprocessing

            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start, initargs=(os.getpid(),))
        return _pool


def draw(data: dict[str, Any], colours: dict[str, str] | None = None):
    """`bot.timeline.timeline(data, colours)`, drawn in the drawing process (blocks the calling thread, not the
    others); in this thread when that process cannot draw it."""
    global _pool
    try:
        return _the_pool().submit(_draw, data, colours).result()
    except Exception as e:  # no process to be had (limits, memory), or it died (BrokenProcessPool): draw here
        log.warning("drawing a briefing picture in its own process failed (%s); drawn in the bot's thread",
                    str(e) or type(e).__name__)
        with _lock:
            broken, _pool = _pool, None  # the next picture starts a new process
        if broken is not None:
            broken.shutdown(wait=False, cancel_futures=True)
        return _draw(data, colours)


def drawing_pid() -> int | None:
    """The drawing process's id, once it runs (tests)."""
    with _lock:
        pool = _pool
    procs = getattr(pool, "_processes", None) or {}
    return next(iter(procs), None)


def shutdown() -> None:
    """End the drawing process (the bot is stopping)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
