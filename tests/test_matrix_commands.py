"""Chat commands in Matrix rooms, against a real Synapse: replies are threaded notices with HTML, alerts reach
the watch room, history before the first start is not answered, unknown rooms only get help and zone."""
from __future__ import annotations

import asyncio

import pytest

from tests.matrix_harness import Bot, bot_messages, history, make_world, say

pytestmark = pytest.mark.synapse


async def test_command_reply_is_a_threaded_notice_with_html(synapse, sqlite_url):
    world = make_world(synapse)
    room = world.joint[0]
    await say(synapse, world.alice, room, "!help")  # said before the bot ever ran: history, never answered
    async with Bot(world, sqlite_url):
        cmd = await say(synapse, world.alice, room,
                        '!op log boarding vessel=IMO9074729 at=33.74,-118.27 start=+1h end=2h contact="CBP desk"')
        [reply] = await bot_messages(world, world.alice, room)
        content = reply["content"]
        assert content["msgtype"] == "m.notice"
        assert content["body"].startswith("OP-1 logged")
        assert content["format"] == "org.matrix.custom.html"
        assert "<b>OP-1</b>" in content["formatted_body"]
        assert content["m.relates_to"]["m.in_reply_to"]["event_id"] == cmd

        # A second agency plans a patrol on top of it: the supervisors hear about it in the watch room.
        await say(synapse, world.bob, world.joint[1], "!op log patrol at=33.741,-118.271 radius=1nm start=+1h end=3h")
        [alert] = await bot_messages(world, world.sam, world.watch)
        assert alert["content"]["msgtype"] == "m.notice"
        assert "CF-1" in alert["content"]["body"]
        assert "m.relates_to" not in alert["content"]

        bad = await say(synapse, world.alice, room, "!op log patrol at=95,0")
        replies = await bot_messages(world, world.alice, room, at_least=2)
        assert "latitude 95 is out of range" in replies[-1]["content"]["body"]
        assert replies[-1]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == bad
        assert "Traceback" not in replies[-1]["content"]["body"]
    # the `!help` said before the first start was never answered
    assert len([e for e in await history(synapse, world.alice, room)
                if e["sender"] == world.bot_user["user_id"] and e["type"] == "m.room.message"]) == 2


async def test_unknown_room_gets_only_help_and_zone(synapse, sqlite_url):
    world = make_world(synapse, joint=1)
    stray = synapse.create_room(world.alice.token, name="stray", invite=[world.bot_user["user_id"]])
    async with Bot(world, sqlite_url) as bot:
        await asyncio.wait_for(_joined(bot, stray), 20)
        await say(synapse, world.alice, stray, "!zone")
        [reply] = await bot_messages(world, world.alice, stray)
        assert "not bound to a zone" in reply["content"]["body"]
        await say(synapse, world.alice, stray, "!op log patrol at=33.7,-118.2 start=+1h end=1h")
        replies = await bot_messages(world, world.alice, stray, at_least=2)
        assert "not bound to a zone" in replies[-1]["content"]["body"]
        await say(synapse, world.alice, stray, "just chatting")  # not a joint room: nothing relayed anywhere
        await say(synapse, world.alice, world.joint[0], "!help")
        await bot_messages(world, world.alice, world.joint[0])
        assert len(await bot_messages(world, world.alice, stray, at_least=2)) == 2


async def _joined(bot: Bot, room_id: str) -> None:
    while room_id not in bot.adapter.client.rooms:
        await asyncio.sleep(0.1)


async def test_access_token_works_and_a_wrong_password_fails_fast(synapse, sqlite_url):
    world = make_world(synapse, joint=1)
    token_login = {**world.settings["matrix"], "access_token": world.bot_user["access_token"]}
    token_login.pop("password")
    async with Bot(world, sqlite_url, matrix=token_login):
        await say(synapse, world.alice, world.joint[0], "!help")
        await bot_messages(world, world.alice, world.joint[0])

    from watchfloor.bot.matrix.adapter import MatrixAdapter, MatrixStartError
    from tests.helpers import make_parts

    parts = make_parts(sqlite_url, **{**world.settings, "matrix": {**world.settings["matrix"], "password": "wrong"}})
    adapter = MatrixAdapter(parts, parts.settings.matrix)
    with pytest.raises(MatrixStartError, match="refused"):
        await adapter.start(lambda _m: asyncio.sleep(0))
    parts.db.dispose()


async def test_a_send_with_a_revoked_token_is_an_auth_failure_not_a_retry(synapse, sqlite_url):
    """Delivery marks the platform down on PlatformAuthError instead of retrying each message."""
    from watchfloor.bot.adapter import PlatformAuthError
    from watchfloor.bot.matrix.adapter import MatrixAdapter
    from tests.helpers import make_parts

    world = make_world(synapse, joint=1)
    room = world.joint[0]
    session = await asyncio.to_thread(synapse.login, world.bot_user["localpart"], world.bot_user["password"])
    await asyncio.to_thread(synapse.join, session["access_token"], room)
    parts = make_parts(sqlite_url, **world.settings)
    adapter = MatrixAdapter(parts, parts.settings.matrix)  # not started: only its sending is exercised
    adapter.client.access_token, adapter.client.user_id = session["access_token"], session["user_id"]
    try:
        assert await adapter.send(f"matrix:{room}", "notice", {"text": "on watch"})
        await asyncio.to_thread(synapse.request, "POST", "/_matrix/client/v3/logout", token=session["access_token"],
                                body={})
        with pytest.raises(PlatformAuthError, match="M_UNKNOWN_TOKEN"):
            await adapter.send(f"matrix:{room}", "notice", {"text": "still on watch"})
    finally:
        await adapter.client.close()
        parts.db.dispose()


async def test_scheduled_briefing_reaches_the_matrix_room_with_its_timeline_picture(synapse, sqlite_url):
    from datetime import UTC, datetime

    from watchfloor.bot.scheduler import post_briefing

    world = make_world(synapse, joint=1)
    room = world.joint[0]
    async with Bot(world, sqlite_url) as bot:
        await say(synapse, world.alice, room, "!op log patrol at=33.74,-118.27 start=+1h end=2h")
        await bot_messages(world, world.alice, room)
        posted = await asyncio.to_thread(post_briefing, bot.parts, "LALB", datetime.now(UTC))
        assert posted >= 1
        bot.service.delivery.wake()
        messages = await bot_messages(world, world.alice, room, at_least=3, timeout=30)
        texts = [m["content"] for m in messages]
        assert any("Morning briefing" in c.get("body", "") for c in texts)
        images = [c for c in texts if c.get("msgtype") == "m.image"]
        assert images and images[0]["url"].startswith("mxc://") and images[0]["info"]["mimetype"] == "image/png"
