"""Encrypted Matrix rooms against a real Synapse: a person's client with encryption (matrix-nio with its e2e
extra) talks to the bot in an end-to-end encrypted room; the bot keeps one device across restarts; LES goes only
to encrypted rooms."""
from __future__ import annotations

import asyncio

import pytest

from tests.matrix_harness import Bot, E2EUser, bot_messages, from_bot, history, make_world, say, wait_for

pytestmark = pytest.mark.synapse

OP = '!op log boarding vessel=IMO9074729 at=33.74,-118.27 start=+1h end=2h contact="CBP desk"'
OP2 = "!op log patrol at=33.70,-118.20 start=+3h end=2h"


def _with_joint(world, room: str) -> None:
    zone = world.settings["zone"][0]
    world.settings["zone"] = [{**zone, "joint_rooms": [*zone["joint_rooms"], f"matrix:{room}"]}]


async def _joined(bot: Bot, room: str) -> bool:
    return room in bot.adapter.client.rooms and bot.adapter.crypto.encrypted(room)


async def _bot_devices(alice: E2EUser, bot_id: str) -> dict[str, str]:
    """The bot's devices as another user's client sees them: device id -> ed25519 key."""
    alice.client.olm.users_for_key_query.add(bot_id)
    await alice.client.keys_query()
    return {d.id: d.ed25519 for d in alice.client.device_store.active_user_devices(bot_id)}


async def test_command_in_an_encrypted_room_is_answered_encrypted_and_a_restart_keeps_the_device(
        synapse, sqlite_url, tmp_path):
    world = make_world(synapse, joint=1)
    bot_id = world.bot_user["user_id"]
    alice = E2EUser(synapse, world.alice, str(tmp_path / "alice"))
    try:
        await alice.sync()
        room = await alice.create_encrypted_room([bot_id])
        _with_joint(world, room)
        async with Bot(world, sqlite_url) as bot:
            await wait_for(lambda: _joined(bot, room))
            cmd = await alice.say(room, OP)
            [reply] = await alice.bot_says(world, room)
            assert reply.body.startswith("OP-1 logged")
            assert reply.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == cmd
            # On the wire (what the homeserver stores) the answer is ciphertext.
            wire = from_bot(await history(synapse, world.alice, room), bot_id, "m.room.encrypted")
            assert len(wire) == 1 and "OP-1" not in str(wire[0]["content"])
        devices = await _bot_devices(alice, bot_id)
        assert list(devices) == ["WFTEST"]

        # Said while the bot is down, with the room key shared before: the restarted bot catches up and still
        # holds that key.
        await alice.say(room, OP2)
        async with Bot(world, sqlite_url):
            replies = await alice.bot_says(world, room, at_least=2)
            assert replies[1].body.startswith("OP-2 logged")
        # One answer per command (the first was not answered again), and still the same single device.
        assert [r.body.split(" ", 1)[0] for r in await alice.bot_says(world, room, at_least=2)] == ["OP-1", "OP-2"]
        assert await _bot_devices(alice, bot_id) == devices
    finally:
        await alice.close()


async def _say_without_sharing_the_key(synapse, alice: E2EUser, room: str, text: str) -> tuple[str, dict]:
    """Alice's client encrypts with a new room key it shares with nobody (as when a client skipped the bot's
    device); returns the event id and the key, to be shared later."""
    olm = alice.client.olm
    olm.create_outbound_group_session(room)
    session = olm.outbound_group_sessions[room]
    key = {"algorithm": "m.megolm.v1.aes-sha2", "room_id": room, "session_id": session.id,
           "session_key": session.session_key}
    session.shared = True
    content = olm.group_encrypt(room, {"type": "m.room.message", "content": {"msgtype": "m.text", "body": text}})
    event_id = await asyncio.to_thread(synapse.send_event, alice.who.token, room, "m.room.encrypted", content)
    return event_id, key


async def _share_key_with_bot(alice: E2EUser, bot_id: str, key: dict) -> None:
    from nio import ToDeviceMessage

    olm = alice.client.olm
    await alice.sync()
    device = olm.device_store[bot_id]["WFTEST"]
    if olm.session_store.get(device.curve25519) is None:
        await alice.client.keys_claim({bot_id: ["WFTEST"]})
    session = olm.session_store.get(device.curve25519)
    payload = olm._olm_encrypt(session, device, "m.room_key", key)
    await alice.client.to_device(ToDeviceMessage("m.room.encrypted", bot_id, "WFTEST", payload))


async def test_a_message_whose_keys_come_late_is_kept_told_once_and_answered_once(synapse, sqlite_url, tmp_path):
    world = make_world(synapse, joint=1)
    bot_id = world.bot_user["user_id"]
    alice = E2EUser(synapse, world.alice, str(tmp_path / "alice"))
    try:
        await alice.sync()
        room = await alice.create_encrypted_room([bot_id])
        _with_joint(world, room)
        async with Bot(world, sqlite_url, unreadable_after=1.0) as bot:
            await wait_for(lambda: _joined(bot, room))
            await alice.sync()
            event_id, key = await _say_without_sharing_the_key(synapse, alice, room, OP)
            # Unreadable for now: the sender is told once that the bot could not read it.
            [notice] = await alice.bot_says(world, room)
            assert "could not read your message" in notice.body and "Alice" in notice.body
            assert notice.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == event_id
            # Told once: two more sync rounds later, still the one notice.
            rounds = bot.adapter._syncs
            await wait_for(lambda: _past(bot.adapter, rounds + 2))
            assert len(await alice.bot_says(world, room)) == 1
        # The key comes while the bot is down; the message was kept (in the database), so it is answered now.
        await _share_key_with_bot(alice, bot_id, key)
        async with Bot(world, sqlite_url, unreadable_after=1.0) as bot:
            said = await alice.bot_says(world, room, at_least=2)
            assert said[1].body.startswith("OP-1 logged")
            assert said[1].source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == event_id
            await alice.say(room, "!help")  # a later message: by its answer, anything owed before it is out
            said = await alice.bot_says(world, room, at_least=3)
            assert not bot.adapter.crypto.pending
        bodies = [e.body for e in said]
        assert sum("could not read" in b for b in bodies) == 1
        assert sum(b.startswith("OP-1 logged") for b in bodies) == 1
    finally:
        await alice.close()


async def test_les_goes_only_to_encrypted_rooms_and_a_room_encrypted_later_is_noticed(
        synapse, sqlite_url, tmp_path, caplog):
    from watchfloor.bot.matrix.check import homeserver_warnings

    les = ["UNCLASS", "FOUO", "LES"]
    world = make_world(synapse, joint=2, clearances=[les, les], bridge={"withheld_notice": True})
    bot_id = world.bot_user["user_id"]
    a, b = world.joint
    alice = E2EUser(synapse, world.alice, str(tmp_path / "alice"))
    try:
        await alice.sync()
        c = await alice.create_encrypted_room([bot_id])
        _with_joint(world, c)
        world.settings["room"] = [*world.settings["room"], {"id": f"matrix:{c}", "clearance": les}]
        caplog.set_level("WARNING", logger="watchfloor.matrix")
        async with Bot(world, sqlite_url) as bot:
            await wait_for(lambda: _joined(bot, c))
            # `config check` and the start-up log name the unencrypted rooms cleared for LES, not the encrypted one.
            warned = await asyncio.to_thread(homeserver_warnings, bot.parts.settings)
            assert sorted(warned) == sorted(f"room 'matrix:{r}' is cleared for LES but not encrypted: nothing "
                                            "marked LES is posted there until it is (les_requires_encryption)"
                                            for r in (a, b))
            await wait_for(lambda: _logged(caplog, f"'matrix:{b}' is cleared for LES but not encrypted"))
            assert not _logged_now(caplog, f"'matrix:{c}'")

            await say(synapse, world.alice, a, "[LES] informant says the Ocean Star carries cocaine")
            [relayed] = await alice.bot_says(world, c)
            assert relayed.body == "[CBP] Alice: [LES] informant says the Ocean Star carries cocaine"
            [withheld] = await bot_messages(world, world.bob, b)
            assert withheld["content"]["body"].startswith("A LES message was withheld")
            assert "cocaine" not in str(withheld["content"])

            # Room b is encrypted from now on: the bot notices without a restart and LES goes there too.
            await asyncio.to_thread(synapse.request, "PUT", f"/_matrix/client/v3/rooms/{b}/state/m.room.encryption/",
                                    token=world.alice.token, body={"algorithm": "m.megolm.v1.aes-sha2"})
            await wait_for(lambda: _encrypted(bot, b))
            await say(synapse, world.alice, a, "[LES] she slips aboard at 0300")
            said = await alice.bot_says(world, b, at_least=2)  # after the withheld notice of the first
            assert [e.body for e in said][1:] == ["[CBP] Alice: [LES] she slips aboard at 0300"]
            assert from_bot(await history(synapse, world.bob, b), bot_id, "m.room.encrypted")
    finally:
        await alice.close()


async def _encrypted(bot: Bot, room: str) -> bool:
    return bot.adapter.crypto.encrypted(room)


async def _logged(caplog, text: str) -> bool:
    return _logged_now(caplog, text)


def _logged_now(caplog, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def test_encrypted_room_is_bridged_with_edits_removals_and_an_encrypted_briefing_picture(
        synapse, sqlite_url, tmp_path):
    from datetime import UTC, datetime

    from nio import DownloadResponse, RoomSendResponse
    from nio.crypto.attachments import decrypt_attachment

    from watchfloor.bot.scheduler import post_briefing

    world = make_world(synapse, joint=1)
    bot_id = world.bot_user["user_id"]
    [plain] = world.joint
    alice = E2EUser(synapse, world.alice, str(tmp_path / "alice"))
    try:
        await alice.sync()
        c = await alice.create_encrypted_room([bot_id])
        _with_joint(world, c)
        async with Bot(world, sqlite_url) as bot:
            await wait_for(lambda: _joined(bot, c))
            said = await alice.say(c, "all quiet at berth 12")
            [copy] = await bot_messages(world, world.bob, plain)
            assert copy["content"]["body"] == "[CBP] Alice: all quiet at berth 12"

            await alice.sync()
            edit = {"msgtype": "m.text", "body": "* all quiet at berth 14",
                    "m.new_content": {"msgtype": "m.text", "body": "all quiet at berth 14"},
                    "m.relates_to": {"rel_type": "m.replace", "event_id": said}}
            assert isinstance(await alice.client.room_send(c, "m.room.message", edit, ignore_unverified_devices=True),
                              RoomSendResponse)
            edited = (await bot_messages(world, world.bob, plain, at_least=2))[1]["content"]
            assert edited["m.relates_to"] == {"rel_type": "m.replace", "event_id": copy["event_id"]}
            assert edited["m.new_content"]["body"] == "[CBP] Alice: all quiet at berth 14"

            await say(synapse, world.bob, plain, "copy that")
            [relayed] = await alice.bot_says(world, c)
            assert relayed.body == "[USCG] Bob: copy that"

            await alice.client.room_redact(c, said)
            [removal] = await bot_messages(world, world.bob, plain, etype="m.room.redaction")
            assert copy["event_id"] in (removal.get("redacts"), removal["content"].get("redacts"))

            await say(synapse, world.bob, plain, "!op log patrol at=33.74,-118.27 start=+1h end=2h")
            await bot_messages(world, world.bob, plain, at_least=3)  # the copy, its edit, and OP-1 logged
            assert await asyncio.to_thread(post_briefing, bot.parts, "LALB", datetime.now(UTC)) >= 1
            bot.service.delivery.wake()
            said_in_c = await wait_for(lambda: _with_image(alice, world, c), timeout=40)
            [image] = [e for e in said_in_c if getattr(e, "key", None)]
            got = await alice.client.download(image.url)
            assert isinstance(got, DownloadResponse)
            png = decrypt_attachment(got.body, image.key["k"], image.hashes["sha256"], image.iv)
            assert png.startswith(b"\x89PNG")
            # The homeserver holds only ciphertext of the picture.
            assert not got.body.startswith(b"\x89PNG")
    finally:
        await alice.close()


async def _with_image(alice: E2EUser, world, room: str):
    await alice.sync()
    found = [e for r, e in alice.seen if r == room and e.sender == world.bot_user["user_id"]]
    return found if any(getattr(e, "key", None) for e in found) else None


async def test_encrypted_room_unencrypted_room_and_slack_are_bridged(synapse, sqlite_url, slack_api, tmp_path):
    from watchfloor.bot.delivery import Delivery
    from watchfloor.bot.matrix.adapter import MatrixAdapter
    from watchfloor.bot.runner import Service
    from watchfloor.bot.slack.adapter import SlackAdapter
    from tests.fixtures.slack_api import apost_signed, event_body
    from tests.helpers import make_parts
    from tests.test_slack_adapter import SECRET, free_port, message_event

    channel, dana = "C0JOINT", "UDANA"
    world = make_world(synapse, joint=1)
    bot_id = world.bot_user["user_id"]
    [plain] = world.joint
    alice = E2EUser(synapse, world.alice, str(tmp_path / "alice"))
    await alice.sync()
    c = await alice.create_encrypted_room([bot_id])
    _with_joint(world, c)
    settings = dict(world.settings)
    settings["zone"] = [{**settings["zone"][0],
                         "joint_rooms": [*settings["zone"][0]["joint_rooms"], f"slack:{channel}"]}]
    settings["agency"] = [dict(a) for a in settings["agency"]]
    settings["agency"][1]["members"] = [*settings["agency"][1]["members"], f"slack:{dana}"]  # USCG
    settings["slack"] = {"bot_token": "xoxb-test", "signing_secret": SECRET, "port": free_port(),
                         "host": "127.0.0.1", "api_url": slack_api.base_url}
    slack_api.users[dana] = {"real_name": "Dana Reyes", "display_name": "Dana"}

    parts = await asyncio.to_thread(make_parts, sqlite_url, **settings)
    matrix = MatrixAdapter(parts, parts.settings.matrix, sync_timeout_ms=5000)
    slack = SlackAdapter(parts, parts.settings.slack)
    service = Service(parts, [matrix, slack], delivery=Delivery(parts, [matrix, slack], poll_interval=0.2,
                                                                backoff_base=0.25, backoff_cap=1.0))
    await service.start()
    try:
        await wait_for(lambda: _encrypted_joined(matrix, c))
        # Slack -> both Matrix rooms; the encrypted room gets it encrypted.
        status, _ = await apost_signed(slack.url, event_body(message_event(
            "on scene at berth 12", user=dana, channel=channel, ts="1764600000.000100"), "EvA"), SECRET)
        assert status == 200
        [in_c] = await alice.bot_says(world, c)
        assert in_c.body == "[USCG] Dana: on scene at berth 12"
        [in_plain] = await bot_messages(world, world.bob, plain)
        assert in_plain["content"]["body"] == "[USCG] Dana: on scene at berth 12"
        assert from_bot(await history(synapse, world.alice, c), bot_id, "m.room.encrypted")

        # The encrypted room -> Slack and the unencrypted room, decrypted and attributed.
        await alice.say(c, "copy, boarding team en route")
        [post] = await slack_api.async_wait_for("chat.postMessage", timeout=20)
        assert post.params["channel"] == channel
        assert post.params["text"] == "[CBP] Alice: copy, boarding team en route"
        copies = await bot_messages(world, world.bob, plain, at_least=2)
        assert copies[1]["content"]["body"] == "[CBP] Alice: copy, boarding team en route"
    finally:
        await service.stop()
        parts.db.dispose()
        await alice.close()


async def _encrypted_joined(adapter, room: str) -> bool:
    return room in adapter.client.rooms and adapter.crypto.encrypted(room)


async def _past(adapter, rounds: int) -> bool:
    return adapter._syncs >= rounds
