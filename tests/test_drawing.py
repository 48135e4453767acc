"""The briefings' pictures are drawn in a process of their own and the scheduled jobs run in threads of their own,
so that a command is not slowed or queued while the zones' briefings are made (issue 27). Real processes and
signals, PostgreSQL, the scheduler's own jobs."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time

from watchfloor.bot import drawing
from watchfloor.bot.scheduler import JobScheduler
from watchfloor.bot.timeline import timeline
from tests.helpers import ConsoleUser, child_outlives_a_sigkilled_parent, make_parts, process_gone
from tests.test_briefing import BRIEFING_AT, LES_ROOM, SETTINGS, UNCLASS_ROOM, _briefings, _day_of_operations, \
    _lanes


def test_pictures_drawn_apart_are_the_room_s_pictures_and_the_process_ends_with_the_scheduler(pg_url, clock):
    parts = make_parts(pg_url, clock, **SETTINGS)
    _day_of_operations(parts, clock)
    sched = JobScheduler(parts, clock, pictures_apart=True)
    try:
        assert sched.post_briefing("LALB", BRIEFING_AT) == 4
        pid = drawing.drawing_pid()
        assert pid is not None and pid != os.getpid() and not process_gone(pid)
        got = _briefings(parts)
        # each room's clearance still decides what is drawn
        assert _lanes(got[LES_ROOM]["image"]) == ["CBP", "HSI", "USCG"]
        assert _lanes(got[UNCLASS_ROOM]["image"]) == ["CBP", "USCG"]
    finally:
        sched.shutdown()
    deadline = time.monotonic() + 10
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(pid), "the drawing process outlived the scheduler's shutdown"
    parts.db.dispose()


def test_a_drawing_process_that_dies_costs_no_picture(pg_url, clock, caplog):
    parts = make_parts(pg_url, clock, **SETTINGS)
    _day_of_operations(parts, clock)
    try:
        drawing.draw({"by_agency": {}})  # (nothing to draw: None) the process is up
        first = drawing.drawing_pid()
        os.kill(first, signal.SIGKILL)  # as the kernel's OOM killer would
        while not process_gone(first):
            time.sleep(0.05)
        with caplog.at_level(logging.WARNING, logger="watchfloor.drawing"):
            assert JobScheduler(parts, clock, pictures_apart=True).post_briefing("LALB", BRIEFING_AT) == 4
        got = _briefings(parts)
        assert _lanes(got[LES_ROOM]["image"]) == ["CBP", "HSI", "USCG"]  # drawn in the bot's thread instead
        assert "drawn in the bot's thread" in caplog.text
        drawing.draw({"by_agency": {}})
        again = drawing.drawing_pid()
        assert again is not None and again != first  # the next picture has a process again
    finally:
        drawing.shutdown()
    parts.db.dispose()


_ORPHAN_CHECK = """
import time
from watchfloor.bot import drawing

if __name__ == "__main__":
    drawing.draw({"by_agency": {}})
    print(drawing.drawing_pid(), flush=True)
    time.sleep(3600)
"""


def test_the_drawing_process_dies_with_the_bot_even_on_sigkill(tmp_path):
    assert not child_outlives_a_sigkilled_parent(tmp_path, _ORPHAN_CHECK), "the drawing process outlived the bot"


async def test_a_command_is_not_queued_behind_a_briefing_being_made(pg_url, clock):
    """The event loop's threads answer commands; the briefing jobs have threads of their own. Here the loop has
    one thread (as when every zone's briefing fell due at once and took all of them) and the briefing's picture
    takes 3 s: the command is answered meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    parts = make_parts(pg_url, clock, **SETTINGS)
    _day_of_operations(parts, clock)
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
    drawing_started, drawn = threading.Event(), threading.Event()

    def slow_draw(data, colours=None):
        drawing_started.set()
        time.sleep(3)  # a picture that takes long (a busy machine, a big zone)
        picture = timeline(data, colours)
        drawn.set()
        return picture

    sched = JobScheduler(parts, clock)
    sched.draw = slow_draw
    sched.start()  # leads at once (no duties): the briefing due this morning is made now, as a catch-up
    try:
        for _ in range(400):  # (not waited in a thread: the loop's one thread is the commands')
            if drawing_started.is_set():
                break
            await asyncio.sleep(0.05)
        assert drawing_started.is_set(), "the briefing was not made"
        alice = ConsoleUser(parts, "LALB", "alice", "CBP")
        t0 = time.monotonic()
        answer = await asyncio.to_thread(alice.say, "!op log patrol at=33.70,-118.10 start=2026-12-02T16:00 end=1h")
        took = time.monotonic() - t0
        assert "OP-" in answer and not drawn.is_set(), "the briefing was finished before the command was answered"
        assert took < 2.0, f"the command waited {took:.1f} s behind the briefing"
        for _ in range(400):  # the briefing is stored once its pictures are drawn
            if len(_briefings(parts)) == 4:
                break
            await asyncio.sleep(0.05)
        assert len(_briefings(parts)) == 4
    finally:
        sched.shutdown()
    parts.db.dispose()
