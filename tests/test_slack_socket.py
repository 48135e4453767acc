"""Socket Mode as Slack runs it: `apps.connections.open` (the Web API stand-in) hands out a local WebSocket
(`SocketModeStandIn`), which sends slash command, Events API and interactivity envelopes to the real Bolt app,
checks that each is acknowledged by its envelope_id, drops the socket mid-stream and offers whatever was not
acknowledged again on the next connection, as Slack does. Every command is answered exactly once."""
from __future__ import annotations

import asyncio
import json
from collections import Counter
from contextlib import asynccontextmanager

import pytest
from sqlmodel import select

from watchfloor.storage.tables import OperationRow, OutboxRow
from tests.fixtures.slack_api import (
    SocketModeStandIn,
    block_action_body,
    event_body,
    slash_command_body,
    socket_payload,
)
from tests.test_slack_adapter import (
    ALICE,
    BOB,
    JOINT,
    LOG_OP,
    SAM,
    WATCH,
    count,
    deliver,
    message_event,
    running,
    settle,
    slack_settings,
)

PING = 0.5  # seconds: how soon a socket that died without a close frame is noticed


@asynccontextmanager
async def socket_mode(db_url, clock, api):
    settings = slack_settings(api.base_url)
    settings["slack"]["app_token"] = "xapp-test"
    async with SocketModeStandIn() as slack:
        api.socket_url = slack.url
        async with running(db_url, clock, api, settings=settings, socket_ping_interval=PING) as (parts, adapter):
            await slack.wait(lambda: slack.connected, what="the app to connect")
            yield slack, parts, adapter


def slash(api, text, trigger, name, command="/op", user=ALICE, channel=JOINT):
    return socket_payload(slash_command_body(command=command, text=text, user_id=user, channel_id=channel,
                                             response_url=api.response_url(name), trigger_id=trigger))


def answers(parts) -> Counter:
    """How many answers each message got, by the message's id."""
    with parts.db.session() as s:
        rows = s.exec(select(OutboxRow).where(OutboxRow.kind == "reply")).all()
    return Counter(json.loads(r.payload)["reply_to"] for r in rows)


async def test_envelopes_are_acknowledged_and_a_redelivery_acts_once(db_url, clock, slack_api):
    async with socket_mode(db_url, clock, slack_api) as (slack, parts, adapter):
        [opened] = slack_api.calls_to("apps.connections.open")
        assert opened.token == "xapp-test"  # the app-level token opens the socket, not the bot token
        command = await slack.send("slash_commands", slash(slack_api, LOG_OP, "s1", "alice"))
        ts = "1764600000.000100"
        message = await slack.send("events_api", socket_payload(event_body(message_event("!zone", user=BOB, ts=ts),
                                                                          "Ev1")))
        press = await slack.send("interactive", socket_payload(block_action_body(
            action_id="ack:CF-9", value="CF-9", user_id=SAM, channel_id=WATCH, message_ts="1764600001.000100",
            response_url=slack_api.response_url("sam"), trigger_id="p1")))
        await slack.wait_acked(command, message, press)
        for envelope_id in (command, message, press):
            assert [a["envelope_id"] for a in slack.acks[envelope_id]] == [envelope_id]
            assert slack.ack_seconds[envelope_id] < 3  # Slack's limit; the work runs after the ack
        await settle(adapter, handled=3)
        assert await asyncio.to_thread(answers, parts) == Counter(
            {"cmd:s1": 1, f"msg:slack:{JOINT}:{ts}": 1,
             f"slack-action:{WATCH}:1764600001.000100:p1:ack:CF-9": 1})

        # Slack offers the same envelopes again (it missed the acknowledgements): acknowledged, not acted on.
        await slack.send("events_api", slack.delivered[1]["payload"], envelope_id=message, retry_attempt=1)
        await slack.send("slash_commands", slack.delivered[0]["payload"], envelope_id=command)
        await slack.wait(lambda: len(slack.acks[message]) == 2 and len(slack.acks[command]) == 2,
                         what="the redeliveries to be acknowledged")
        await settle(adapter, handled=5)
        assert set((await asyncio.to_thread(answers, parts)).values()) == {1}
        assert await asyncio.to_thread(count, parts, OperationRow) == 1

        await deliver(parts, adapter)
        [logged] = slack_api.responses("alice")
        assert "OP-1 logged" in logged["text"]
        [refused] = slack_api.responses("sam")
        assert refused["response_type"] == "ephemeral" and "CF-9" in refused["text"]
        [zone] = slack_api.calls_to("chat.postMessage")
        assert zone.params["channel"] == JOINT


@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "connection-lost"])
async def test_a_dropped_socket_is_replaced_and_no_envelope_is_lost(sqlite_url, clock, slack_api, abrupt):
    async with socket_mode(sqlite_url, clock, slack_api) as (slack, parts, adapter):
        sent = []
        for i in range(6):
            if i % 2:
                sent.append(await slack.send("events_api", socket_payload(event_body(
                    message_event("!op list", ts=f"17646000{i:02d}.000100"), f"Ev{i}"))))
            else:
                start = f"2026-12-01T{14 + i}:00"
                sent.append(await slack.send("slash_commands", slash(
                    slack_api, f"log patrol at=33.{i}4,-118.27 radius=1nm start={start} end=1h", f"t{i}", f"r{i}")))
        await slack.drop(abrupt=abrupt)  # before the app could acknowledge them all

        await slack.wait(lambda: slack.connections >= 2 and not slack.unacked, timeout=8,
                         what="a new connection and every envelope acknowledged")
        assert set(sent) <= set(slack.acks)
        assert len(slack.delivered) > len(sent)  # some were offered again on the new socket
        assert {e["envelope_id"] for e in slack.delivered[len(sent):]} <= set(sent)
        assert len(slack_api.calls_to("apps.connections.open")) >= 2  # a fresh URL for the new socket

        assert await adapter.idle(timeout=10)
        got = await asyncio.to_thread(answers, parts)
        assert len(got) == 6 and set(got.values()) == {1}  # every command answered, and only once
        assert await asyncio.to_thread(count, parts, OperationRow) == 3
        await deliver(parts, adapter)
        for i in range(0, 6, 2):
            [answer] = slack_api.responses(f"r{i}")
            assert "logged" in answer["text"]
