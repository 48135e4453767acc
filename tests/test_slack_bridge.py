"""A zone bridged across platforms: a Slack channel (the real Bolt app, signed requests, the local Slack Web
API stand-in) and a Matrix room on a real Synapse, wired as `watchfloor run` wires them."""
from __future__ import annotations

import asyncio

import pytest
from sqlmodel import select

from watchfloor.bot.delivery import Delivery
from watchfloor.bot.matrix.adapter import MatrixAdapter
from watchfloor.bot.runner import Service
from watchfloor.bot.slack.adapter import SlackAdapter
from watchfloor.storage.tables import OutboxRow
from tests.fixtures.slack_api import apost_signed, event_body
from tests.helpers import make_parts
from tests.matrix_harness import bot_messages, make_world, say, wait_for
from tests.test_slack_adapter import SECRET, free_port, message_event

pytestmark = pytest.mark.synapse

CHANNEL, DANA = "C0JOINT", "UDANA"


async def test_slack_channel_and_matrix_room_are_bridged_both_ways(synapse, sqlite_url, slack_api):
    world = make_world(synapse, joint=1)
    [matrix_room] = world.joint
    settings = dict(world.settings)
    settings["zone"] = [{**settings["zone"][0],
                         "joint_rooms": [*settings["zone"][0]["joint_rooms"], f"slack:{CHANNEL}"]}]
    settings["agency"] = [dict(a) for a in settings["agency"]]
    settings["agency"][1]["members"] = [*settings["agency"][1]["members"], f"slack:{DANA}"]  # USCG
    settings["slack"] = {"bot_token": "xoxb-test", "signing_secret": SECRET, "port": free_port(),
                         "host": "127.0.0.1", "api_url": slack_api.base_url}
    slack_api.users[DANA] = {"real_name": "Dana Reyes", "display_name": "Dana"}

    slack_api.users["UBOB"] = {"real_name": "Robert Reyes", "display_name": "Bob"}
    slack_api.channels["C0HARBOR"] = {"name": "harbor-ops"}

    parts = await asyncio.to_thread(make_parts, sqlite_url, **settings)
    matrix = MatrixAdapter(parts, parts.settings.matrix, sync_timeout_ms=5000)
    slack = SlackAdapter(parts, parts.settings.slack)
    delivery = Delivery(parts, [matrix, slack], poll_interval=0.2, backoff_base=0.25, backoff_cap=1.0)
    service = Service(parts, [matrix, slack], delivery=delivery)
    await service.start()
    try:
        # Slack -> Matrix, attributed with the agency and the Slack display name.
        ts = "1764600000.000100"
        status, _ = await apost_signed(slack.url, event_body(message_event("on scene at berth 12", user=DANA,
                                                                           channel=CHANNEL, ts=ts), "EvA"), SECRET)
        assert status == 200
        [copy] = await bot_messages(world, world.alice, matrix_room)
        assert copy["content"]["body"] == "[USCG] Dana: on scene at berth 12"

        # Matrix -> Slack: a reply to the copy lands in the Slack thread of the original message.
        await say(synapse, world.alice, matrix_room, "copy, boarding team en route",
                  **{"m.relates_to": {"m.in_reply_to": {"event_id": copy["event_id"]}}})
        [post] = await slack_api.async_wait_for("chat.postMessage", timeout=20)
        assert post.params["channel"] == CHANNEL
        assert post.params["text"] == "[CBP] Alice: copy, boarding team en route"
        assert post.params.get("thread_ts") == ts

        # Slack retries the same event: relayed once. The bot's own copy coming back is not relayed either.
        await apost_signed(slack.url, event_body(message_event("on scene at berth 12", user=DANA, channel=CHANNEL,
                                                               ts=ts), "EvA"), SECRET,
                           extra_headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})

        async def bot_ts():
            def q():
                with parts.db.session() as s:
                    return s.exec(select(OutboxRow.remote_id).where(OutboxRow.room == f"slack:{CHANNEL}",
                                                                    OutboxRow.status == "sent")).first()
            return await asyncio.to_thread(q)
        own = await wait_for(bot_ts)
        echo = {"type": "message", "channel": CHANNEL, "user": "UBOT", "bot_id": "BBOT",
                "text": "[CBP] Alice: copy, boarding team en route", "ts": own}
        await apost_signed(slack.url, event_body(echo, "EvB"), SECRET)
        assert await slack.idle(timeout=10)  # both handled: anything they relayed is in the outbox now

        # Slack markup reads as Dana saw it: names and plain links, in the text and in the HTML. Relayed after
        # anything the retry or the echo could have relayed, so once it is there, those would be too.
        marked = ("<@UBOB> see <#C0JOINT|joint>, <#C0HARBOR> and <https://x.example/p?a=1&amp;b=2|the plan> "
                  "<!here> &lt;3")
        await apost_signed(slack.url, event_body(message_event(marked, user=DANA, channel=CHANNEL,
                                                               ts="1764600100.000100"), "EvC"), SECRET)
        copies = await bot_messages(world, world.alice, matrix_room, at_least=2)
        assert [c["content"]["body"] for c in copies] == [
            "[USCG] Dana: on scene at berth 12",
            "[USCG] Dana: @Bob see #joint, #harbor-ops and the plan (https://x.example/p?a=1&b=2) @\u200bhere <3"]
        html = copies[-1]["content"]["formatted_body"]
        assert "UBOB" not in html and "the plan (https://x.example/p?a=1&amp;b=2)" in html

        # What Matrix users write reaches Slack as words: no `<!channel>` pinging the whole channel.
        await say(synapse, world.alice, matrix_room, "<!channel> <@UDANA> boarding now & AT&T")
        post = (await slack_api.async_wait_for("chat.postMessage", count=2, timeout=20))[-1]
        assert post.params["text"] == "[CBP] Alice: &lt;!channel&gt; &lt;@UDANA&gt; boarding now &amp; AT&amp;T"
        for block in post.params["blocks"]:
            assert "<!channel>" not in block["text"]["text"] and "<@UDANA>" not in block["text"]["text"]
    finally:
        await service.stop()
        parts.db.dispose()
