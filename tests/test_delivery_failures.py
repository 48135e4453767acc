"""What a failed send leads to: a row that will never go is given up (and said so on the other platform)
instead of holding its room forever; a platform that refuses the bot's credentials is marked down and probed
slowly, not hammered, and everything goes out once it takes them again; an outage only delays."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta

import aiohttp
from sqlmodel import select

from watchfloor.bot import metrics
from watchfloor.bot.adapter import PermanentSendError, PlatformAuthError, TransientSendError
from watchfloor.bot.delivery import Delivery
from watchfloor.bot.web.health import bound_port, start_health
from watchfloor.bot.slack.adapter import SlackAdapter
from watchfloor.commands.message import ChatMessage
from watchfloor.storage import outbox
from watchfloor.storage.tables import OutboxRow
from tests.helpers import make_parts

WATCH, JOINT = "slack:C0WATCH", "slack:C0JOINT"
MATRIX_WATCH, MATRIX_JOINT = "matrix:!watch:localhost", "matrix:!joint:localhost"
SETTINGS = dict(zone=[{"code": "LALB", "joint_rooms": [JOINT, MATRIX_JOINT], "watch_rooms": [WATCH, MATRIX_WATCH]}])


class Platform:
    """A chat platform at the adapter boundary: takes or refuses each send as the test says, records what it took.
    `refuse` maps a text to the exception its send raises."""

    def __init__(self, platform: str = "slack"):
        self.platform = platform
        self.posted: list[tuple[str, str, str]] = []  # (room, kind, text) in the order taken
        self.sends = 0
        self.refuse: dict[str, type[Exception] | Exception] = {}
        self.up = True  # its health check (the platform answers)
        self.credentials_ok = True
        self.sent_event = asyncio.Event()

    async def start(self, on_message) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, room, kind, payload, *, target_id=None, reply_to_remote=None):
        self.sends += 1
        self.sent_event.set()
        if not self.credentials_ok:
            raise PlatformAuthError("invalid_auth")
        if not self.up:
            raise TransientSendError("unreachable")
        error = self.refuse.get(payload.get("text"))
        if error is not None:
            raise error("no") if isinstance(error, type) else error
        self.posted.append((room, kind, payload.get("text")))
        return f"{self.platform}-{len(self.posted)}"

    async def healthy(self) -> bool:
        return self.up and self.credentials_ok


def enqueue(parts, room: str, *texts: str, kind: str = "alert") -> list[int]:
    with parts.db.session() as s:
        rows = [outbox.enqueue(s, room=room, kind=kind, payload={"text": t}, now=parts.engine.clock())
                for t in texts]
        return [r.id for r in rows]


def rows(parts, room: str | None = None) -> list[OutboxRow]:
    with parts.db.session() as s:
        q = select(OutboxRow).order_by(OutboxRow.id)
        if room:
            q = q.where(OutboxRow.room == room)
        return list(s.exec(q).all())


def dead_total(platform: str) -> float:
    return metrics.REGISTRY.get_sample_value("watchfloor_outbox_dead_total", {"platform": platform}) or 0.0


def notices(parts) -> list[OutboxRow]:
    return [r for r in rows(parts) if r.kind == "notice" and json.loads(r.payload).get("delivery_failure")]


async def test_an_adapter_bug_gives_the_row_up_after_a_few_tries_and_the_room_goes_on(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    slack = Platform()
    slack.refuse["CF-7 alert"] = KeyError
    enqueue(parts, WATCH, "CF-7 alert", "CF-8 alert", "CF-9 alert")
    delivery = Delivery(parts, [slack], max_unexpected=3, health_ttl=0)
    before = dead_total("slack")

    for _ in range(2):
        await delivery.run_once(slack)
        assert slack.posted == []  # while the row is retried, the room keeps its order
        clock.advance(minutes=1)
    await delivery.run_once(slack)  # the third unplanned error: given up, and the room goes on at once

    assert slack.posted == [(WATCH, "alert", "CF-8 alert"), (WATCH, "alert", "CF-9 alert")]
    first = rows(parts, WATCH)[0]
    assert first.status == "dead" and first.attempts == 3 and "KeyError" in first.last_error
    assert dead_total("slack") == before + 1
    # Said where someone will see it: the zone's watch room on the other platform, not the failing one.
    told = notices(parts)
    assert [r.room for r in told] == [MATRIX_WATCH]
    text = json.loads(told[0].payload)["text"]
    assert "Not delivered" in text and "an alert" in text and WATCH in text and "KeyError" in text
    clock.advance(minutes=1)
    assert await delivery.run_once(slack) == 0  # never tried again
    parts.db.dispose()


async def test_a_refused_row_and_its_edit_are_dropped_the_room_goes_on_and_one_notice_is_posted(sqlite_url, clock):
    """A relayed copy the platform refuses for good is dead at once; the edit of it that follows has no posted
    copy to change, so it is dropped too, without a second notice; later messages still go."""
    from watchfloor.bot.bridge import Bridge

    parts = make_parts(sqlite_url, clock, **SETTINGS)
    bridge = Bridge(parts)
    said = dict(platform="matrix", room=MATRIX_JOINT, sender="matrix:@pat:localhost", sender_name="Pat")
    await asyncio.to_thread(bridge.relay, ChatMessage(text="forbidden words", event_id="$1", **said))
    await asyncio.to_thread(bridge.relay, ChatMessage(text="forbidden words, edited", event_id="$2",
                                                      extra={"edit_of": "$1"}, **said))
    await asyncio.to_thread(bridge.relay, ChatMessage(text="next message", event_id="$3", **said))
    slack = Platform()
    relayed = [json.loads(r.payload)["text"] for r in rows(parts, JOINT)]
    slack.refuse[relayed[0]] = PermanentSendError("slack refused: msg_blocked")
    before = dead_total("slack")

    await Delivery(parts, [slack]).run_once(slack)

    assert [text for _, _, text in slack.posted] == [relayed[2]]
    assert [(r.kind, r.status) for r in rows(parts, JOINT)] == [("relay", "dead"), ("edit", "dead"),
                                                                ("relay", "sent")]
    assert dead_total("slack") == before + 1  # the dropped edit is no second loss
    assert [r.room for r in notices(parts)] == [MATRIX_WATCH]
    parts.db.dispose()


async def test_failing_for_hours_while_the_platform_answers_gives_up_but_an_outage_only_delays(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, **SETTINGS)
    slack = Platform()
    delivery = Delivery(parts, [slack], dead_after=timedelta(hours=6), health_ttl=0)

    # An outage of a whole day (the health check fails too): nothing is given up, order is kept.
    slack.up = False
    enqueue(parts, WATCH, "during the outage 1", "during the outage 2")
    for _ in range(4):
        await delivery.run_once(slack)
        clock.advance(hours=7)
    assert [r.status for r in rows(parts, WATCH)] == ["pending", "pending"]
    slack.up = True
    await delivery.run_once(slack)
    assert [t for _, _, t in slack.posted] == ["during the outage 1", "during the outage 2"]

    # One message the platform keeps answering "not now" for, while it takes everything else: given up after
    # six hours of that, and the room's later messages go on.
    slack.refuse["cursed"] = TransientSendError("slack answered 200 fatal_error")
    enqueue(parts, WATCH, "cursed", "after it")
    await delivery.run_once(slack)
    clock.advance(hours=5, minutes=59)
    await delivery.run_once(slack)
    assert rows(parts, WATCH)[2].status == "pending" and len(slack.posted) == 2
    clock.advance(minutes=2)
    await delivery.run_once(slack)
    assert [r.status for r in rows(parts, WATCH)[2:]] == ["dead", "sent"]
    assert slack.posted[-1] == (WATCH, "alert", "after it")

    # A rate limit says when to come back: never a reason to give up, however long it goes on.
    slack.refuse["busy"] = TransientSendError("slack rate limited", retry_after=3600)
    enqueue(parts, WATCH, "busy")
    for _ in range(8):
        await delivery.run_once(slack)
        clock.advance(hours=1, seconds=1)
    assert rows(parts, WATCH)[-1].status == "pending"
    parts.db.dispose()


async def test_refused_credentials_mark_the_platform_down_probe_slowly_and_resume(db_url, clock, caplog):
    parts = make_parts(db_url, clock, **SETTINGS)
    slack = Platform()
    slack.credentials_ok = False
    rooms = [WATCH, JOINT, "slack:C0OTHER"]
    for room in rooms:
        enqueue(parts, room, f"first in {room}", f"second in {room}")
    delivery = Delivery(parts, [slack], auth_probe_interval=0.2)
    runner = await start_health(parts, [slack], 0, delivery=delivery)
    base = f"http://127.0.0.1:{bound_port(runner)}"
    caplog.set_level(logging.INFO, logger="watchfloor.delivery")
    try:
        await delivery.start()
        deadline = time.monotonic() + 10
        while delivery.refused("slack") is None:
            slack.sent_event.clear()
            await asyncio.wait_for(slack.sent_event.wait(), max(0.01, deadline - time.monotonic()))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                health = await r.json()
                assert r.status == 503
                assert health["checks"]["slack"]["ok"] is False
                assert "credentials refused" in health["checks"]["slack"]["error"]
            async with http.get(f"{base}/metrics") as r:
                assert 'watchfloor_platform_up{platform="slack"} 0.0' in await r.text()

        # Probed once per interval with one send, not every room's head on every backoff.
        t0, sends0 = time.monotonic(), slack.sends
        while slack.sends < sends0 + 3:
            slack.sent_event.clear()
            await asyncio.wait_for(slack.sent_event.wait(), 10)
        assert time.monotonic() - t0 >= 0.35  # three probes span at least two intervals of 0.2 s
        assert all(r.attempts == 0 and r.status == "pending" for r in rows(parts))  # no row pays for it
        down_lines = [r for r in caplog.records if r.levelno >= logging.ERROR and "credentials" in r.message]
        assert 1 <= len(down_lines) <= 1 + (time.monotonic() - t0) / 0.2  # at most one a probe interval

        slack.credentials_ok = True  # an operator fixed the token
        deadline = time.monotonic() + 10
        while len(slack.posted) < 6:
            slack.sent_event.clear()
            await asyncio.wait_for(slack.sent_event.wait(), max(0.01, deadline - time.monotonic()))
        assert delivery.refused("slack") is None
        for room in rooms:  # every message went, each room in its order
            assert [t for rm, _, t in slack.posted if rm == room] == [f"first in {room}", f"second in {room}"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
        assert metrics.REGISTRY.get_sample_value("watchfloor_platform_up", {"platform": "slack"}) == 1.0
    finally:
        await delivery.stop()
        await runner.cleanup()
        parts.db.dispose()


async def test_slack_answering_invalid_auth_stops_sending_until_the_token_works(sqlite_url, clock, slack_api):
    """The real Slack adapter against the Web API stand-in: `invalid_auth` marks Slack down, the message waits
    untouched, and it goes out once Slack takes the token again."""
    parts = make_parts(sqlite_url, clock, slack={"bot_token": "xoxb-revoked", "signing_secret": "s",
                                                 "api_url": slack_api.base_url}, **SETTINGS)
    adapter = SlackAdapter(parts, parts.settings.slack)
    enqueue(parts, WATCH, "CF-1 alert")
    delivery = Delivery(parts, [adapter])
    slack_api.fail_next("chat.postMessage", error="invalid_auth", n=2)

    await delivery.run_once(adapter)
    assert delivery.refused("slack") and "invalid_auth" in delivery.refused("slack")
    waiting = rows(parts, WATCH)[0]
    assert waiting.status == "pending" and waiting.attempts == 0
    await delivery.run_once(adapter)  # the probe: still refused
    assert delivery.refused("slack")
    await delivery.run_once(adapter)  # the probe goes through
    assert delivery.refused("slack") is None
    calls = slack_api.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [200, 200, 200] and calls[-1].params["text"] == "CF-1 alert"
    assert rows(parts, WATCH)[0].status == "sent"
    parts.db.dispose()
