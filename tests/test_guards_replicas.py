"""Guards of "nothing posted twice, nothing stalled" across replicas, each with the failure it prevents:

- a replica whose delivery duty moved to another (its lease lost mid-batch) sends no more of that batch: the new
  holder sends the rest, and nothing shows twice (bot/delivery.py `_deliver_room`);
- a replica whose lease was lost gives the duty up (its on_lose hooks run) and so can take it again: after a
  moment without its database session, its messages flow again (bot/duties.py `_step`);
- Slack's look-up of posts already made (`find_sent`) counts only the bot's own messages: a mark pasted by a
  person, or posted by another app, does not stop the real post (bot/slack/adapter.py `_collect`).

Replicas here are in-process `Service`s with their own `Duties` on one PostgreSQL database, each with its own
Slack token against the one stand-in, so a recorded post tells which replica made it."""
from __future__ import annotations

import asyncio
import logging
import time

import psycopg
import pytest

from watchfloor.bot.adapter import OUTBOX_EVENT_TYPE
from watchfloor.bot.delivery import Delivery
from watchfloor.bot.duties import Duties
from watchfloor.bot.runner import Service
from watchfloor.bot.slack.adapter import SlackAdapter
from watchfloor.storage import outbox
from tests.fixtures.slack_api import BOT_ID, BOT_USER_ID
from tests.helpers import make_parts
from tests.test_delivery_failures import enqueue, rows
from tests.test_exactly_once import deliver_until_settled, slack_parts, texts
from tests.test_slack_adapter import WATCH, slack_settings

SLACK_WATCH = f"slack:{WATCH}"
DUTY = "delivery:slack"


class Replica:
    """One replica in this process: the Slack adapter (its own token), delivery and the duties, as `watchfloor
    run` wires them (bot/runner.py), on the shared PostgreSQL database."""

    def __init__(self, pg_url: str, api, token: str):
        settings = slack_settings(api.base_url)
        settings["slack"]["bot_token"] = token
        self.token = token
        self.parts = make_parts(pg_url, **settings)
        self.adapter = SlackAdapter(self.parts, self.parts.settings.slack)
        self.duties = Duties(self.parts.db, retry_seconds=0.5)
        self.service = Service(self.parts, [self.adapter], duties=self.duties,
                               delivery=Delivery(self.parts, [self.adapter], poll_interval=0.2, health_ttl=0))

    async def start(self) -> "Replica":
        await self.service.start()
        return self

    async def stop(self) -> None:
        await self.service.stop()
        self.parts.db.dispose()


async def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.1)


def end_session(pg_url: str, pid: int) -> None:
    """The database ends the lock's session (an operator, a network blip, a failover would)."""
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def tokens_of(api, text: str) -> list[str]:
    return [c.token for c in api.calls_to("chat.postMessage") if c.params.get("text") == text]


@pytest.mark.postgres
async def test_a_replica_whose_duty_moved_mid_batch_sends_no_more_of_it_and_nothing_shows_twice(pg_url, slack_api):
    a = await Replica(pg_url, slack_api, "xoxb-a").start()
    b = None
    try:
        await until(lambda: a.duties.held(DUTY), 10, "the first replica holds Slack delivery")
        b = await Replica(pg_url, slack_api, "xoxb-b").start()
        said = [f"CF-{n} alert" for n in range(1, 6)]
        # Slack takes the first post at once but its answer is slow: the batch's sender is in the middle of it
        # when its duty moves.
        slack_api.stall_after_next("chat.postMessage", 6.0)
        enqueue(a.parts, SLACK_WATCH, *said)
        a.service.delivery.wake()
        await until(lambda: slack_api.calls_to("chat.postMessage"), 10, "the first post")
        await asyncio.to_thread(end_session, pg_url, a.duties.backend_pid(DUTY))
        await until(lambda: b.duties.held(DUTY), 15, "the other replica takes Slack delivery over")
        await until(lambda: all(r.status == outbox.SENT for r in rows(a.parts, SLACK_WATCH)), 20,
                    "every row sent")
        await asyncio.sleep(6.5)  # the first replica's slow answer has come, and anything it would send after it
        assert texts(slack_api.messages_in(WATCH)) == said  # each once, in order
        assert tokens_of(slack_api, said[0]) == [a.token]
        for text in said[1:]:
            assert tokens_of(slack_api, text) == [b.token], f"{text!r} posted by {tokens_of(slack_api, text)}"
    finally:
        for r in (a, b):
            if r is not None:
                await r.stop()


@pytest.mark.postgres
async def test_a_replica_that_lost_its_lease_gives_the_duty_up_and_takes_it_again(pg_url, slack_api, caplog):
    caplog.set_level(logging.WARNING, logger="watchfloor.duties")
    a = await Replica(pg_url, slack_api, "xoxb-a").start()
    try:
        await until(lambda: a.duties.held(DUTY), 10, "the replica holds Slack delivery")
        first = a.duties.backend_pid(DUTY)
        await asyncio.to_thread(end_session, pg_url, first)
        await until(lambda: not a.duties.held(DUTY), 10, "the replica sees its lease lost")
        # Said after the loss: nobody else holds the duty, so the same replica must take it again and post it.
        enqueue(a.parts, SLACK_WATCH, "CF-9 alert")
        await until(lambda: texts(slack_api.messages_in(WATCH)) == ["CF-9 alert"], 15,
                    "the alert said after the replica's database session ended is posted")
        assert a.duties.held(DUTY) and a.duties.backend_pid(DUTY) != first
        assert any("duty delivery:slack: given up" in r.getMessage() for r in caplog.records)
    finally:
        await a.stop()


@pytest.mark.parametrize("who", ["a person pasting the mark", "another app"])
async def test_a_mark_posted_by_anyone_but_the_bot_does_not_stop_the_real_post(sqlite_url, clock, slack_api, who):
    parts, adapter = slack_parts(sqlite_url, clock, slack_api)
    [row] = enqueue(parts, SLACK_WATCH, "CF-7 pilot boarding overlaps patrol")
    mark = {"event_type": OUTBOX_EVENT_TYPE, "event_payload": {"outbox_id": row}}
    if who == "another app":
        slack_api.said_by(WATCH, "UOTHERAPP", "CF-7 seen", bot_id="BOTHER", metadata=mark)
    else:
        slack_api.said_by(WATCH, "UMALLORY", "CF-7 seen", metadata=mark)
    # A replica taking the channel over looks for posts already made before sending.
    replica = Delivery(parts, [adapter], health_ttl=0)
    await deliver_until_settled(replica, adapter, parts, SLACK_WATCH, clock)
    await adapter.stop()
    assert slack_api.calls_to("conversations.history")  # it was looked for
    posted = slack_api.calls_to("chat.postMessage")
    assert len(posted) == 1, f"the alert was posted {len(posted)} times: {who}'s mark was taken for the bot's post"
    [ours] = [m for m in slack_api.messages_in(WATCH) if m.get("user") == BOT_USER_ID and m.get("bot_id") == BOT_ID]
    assert ours["text"] == "CF-7 pilot boarding overlaps patrol"
    # Edits and replies find the bot's post, not the other message.
    assert rows(parts, SLACK_WATCH)[0].remote_id == ours["ts"]
    parts.db.dispose()
