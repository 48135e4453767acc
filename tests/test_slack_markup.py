"""Slack markup never crosses the bridge raw: what a Slack user wrote reaches the other side as the names and
plain links they saw, and what others wrote reaches Slack as words, never as a mention or a link Slack would
act on. Signed requests to the real Bolt app, the local Web API stand-in answering users.info and
conversations.info."""
from __future__ import annotations

import asyncio

from watchfloor.bot.bridge import Bridge
from watchfloor.commands.message import ChatMessage
from tests.fixtures.slack_api import apost_signed, event_body
from tests.test_slack_adapter import ALICE, BOB, JOINT, SECRET, deliver, message_event, running, settle, \
    slack_settings

MARKUP = ("<@UBOB> see <#C0JOINT|joint> and <#C0HARBOR>: <https://x.example/a?b=1&amp;c=2|the plan>, "
          "<https://x.example/raw>, <mailto:ops@x.example|ops@x.example>, <http://example.com|example.com> "
          "<!here> <!subteam^S1|@boarding-team> cc <@UBOB|bob> &lt;@UNOT&gt; &lt;3 &amp; more")
READABLE = ("@Bob Reyes see #joint and #harbor-ops: the plan (https://x.example/a?b=1&c=2), "
            "https://x.example/raw, ops@x.example, example.com "
            "@here @boarding-team cc @Bob Reyes <@UNOT> <3 & more")


async def test_mentions_channel_links_and_links_arrive_as_names_and_plain_links(sqlite_url, clock, slack_api):
    slack_api.users[BOB] = {"real_name": "Robert Reyes", "display_name": "Bob Reyes"}
    slack_api.channels["C0HARBOR"] = {"name": "harbor-ops"}
    seen: list[ChatMessage] = []
    async with running(sqlite_url, clock, slack_api, seen) as (_parts, adapter):
        t1 = "1764600000.000100"
        await apost_signed(adapter.url, event_body(message_event(MARKUP, ts=t1), "Ev1"), SECRET)
        await settle(adapter, handled=1)
        edit = {"type": "message", "subtype": "message_changed", "channel": JOINT, "ts": "1764600009.000300",
                "event_ts": "1764600009.000300", "hidden": True,
                "message": {"type": "message", "user": ALICE, "text": "<@UBOB> boards at 0630", "ts": t1},
                "previous_message": {"type": "message", "user": ALICE, "text": MARKUP, "ts": t1}}
        await apost_signed(adapter.url, event_body(edit, "Ev2"), SECRET)
        await settle(adapter, handled=2)
        new, changed = seen
        assert new.text == READABLE
        assert changed.text == "@Bob Reyes boards at 0630"
        # Names are looked up once and kept.
        assert [c.params["user"] for c in slack_api.calls_to("users.info")].count(BOB) == 1
        assert len(slack_api.calls_to("conversations.info")) == 1


async def test_a_bang_command_reads_links_as_the_sender_saw_them(sqlite_url, clock, slack_api):
    seen: list[ChatMessage] = []
    async with running(sqlite_url, clock, slack_api, seen) as (_parts, adapter):
        text = "!op log patrol at=33.74,-118.27 radius=1nm start=2026-12-01T16:00 end=2h " \
               "note=\"per <https://x.example/p|the plan> &amp; <@UBOB>\""
        await apost_signed(adapter.url, event_body(message_event(text), "Ev1"), SECRET)
        await settle(adapter, handled=1)
        [cmd] = seen
        assert cmd.text.endswith('note="per the plan (https://x.example/p) & @User UBOB"')
        await deliver(_parts, adapter)
        [post] = slack_api.calls_to("chat.postMessage")
        assert "OP-1 logged" in post.params["text"]


async def test_text_from_the_other_side_reaches_slack_as_words(sqlite_url, clock, slack_api):
    matrix_room = "matrix:!joint:localhost"
    settings = slack_settings(slack_api.base_url)
    settings["zone"][0]["joint_rooms"].append(matrix_room)
    settings["agency"][0]["members"].append("matrix:@alice:localhost")
    async with running(sqlite_url, clock, slack_api, settings=settings) as (parts, adapter):
        said = "<!channel> <@U012ABC> look at <https://evil.example|this> & AT&T's <b>"
        msg = ChatMessage("matrix", matrix_room, "matrix:@alice:localhost", said, "$e1", "Alice")
        assert await asyncio.to_thread(Bridge(parts).relay, msg)
        await deliver(parts, adapter)
        [post] = slack_api.calls_to("chat.postMessage")
        for mrkdwn in [post.params["text"]] + [b["text"]["text"] for b in post.params["blocks"]]:
            assert "<" not in mrkdwn.replace("<@", "")  # no link or special mention Slack would act on
            assert "<@U012ABC>" not in mrkdwn and "<!channel>" not in mrkdwn
            assert "&lt;!channel&gt;" in mrkdwn and "AT&amp;T" in mrkdwn
