"""Room keys go only where they belong, against a real Synapse with real matrix-nio clients:

- each replica is its own device: one that starts after a message was said cannot read it until it has the room
  key, and the running replica answers its key request (people's clients need not be online: they answer no
  other user's device); a device that logs in with the bot's password from outside (not a replica: nothing of
  it in the database) and asks at the same moment is answered nothing, and the bot shares no room key with it
  (bot/matrix/crypto.py `is_replica`, `trust_own_devices`);
- nor is one logged in under a registered replica's device id with keys of its own: the id is no secret, the
  registered keys are what make a device ours;
- another user's device asking the bot for a room key gets nothing (their own clients hold their keys);
- the sender of a message the bot cannot read is told once, however many rounds pass and however many replicas
  find it overdue at once (bot/matrix/crypto.py `overdue`, `tell`)."""
from __future__ import annotations

import asyncio

import pytest

from watchfloor.bot.matrix.crypto import trust_own_devices
from watchfloor.storage import devices
from tests.matrix_harness import Bot, E2EUser, Person, make_world, person, wait_for
from tests.test_matrix_e2e import OP, _joined, _with_joint

pytestmark = pytest.mark.synapse

QUIET_ROUNDS = 3  # the bot's sync rounds an unanswered device is given (each answers what came before it)


async def _bot_device(synapse, world, tmp_path, device_id: str) -> E2EUser:
    """A device logged in with the bot's user id and password, with its own keys (a replica's, or an
    intruder's: the homeserver cannot tell them apart)."""
    bot_id = world.bot_user["user_id"]
    login = await asyncio.to_thread(synapse.login, bot_id.split(":")[0][1:], world.bot_user["password"], device_id)
    client = E2EUser(synapse, Person(bot_id, login["access_token"], device_id, device_id),
                     str(tmp_path / device_id))
    await client.sync()
    client.client.olm.users_for_key_query.add(bot_id)  # the account's other devices: known before trusting them
    await client.sync()
    return client


def _register(bot: Bot, client: E2EUser) -> None:
    """What a replica's start does (bot/matrix/crypto.py `register`): its device id and keys in the database."""
    keys = client.client.olm.account.identity_keys
    with bot.parts.db.session() as s:
        devices.register(s, client.who.user_id, client.who.device_id, keys["curve25519"], keys["ed25519"],
                         bot.parts.engine.clock())


def _trust_every_bot_device(client: E2EUser) -> None:
    """The asking side takes a forwarded key only from a device it verified: verify all of the bot's (an
    intruder would)."""
    for device in client.client.device_store.active_user_devices(client.who.user_id):
        if device.id != client.client.device_id:
            client.client.verify_device(device)


def _encrypted_event(client: E2EUser, room: str, event_id: str):
    from nio import MegolmEvent

    [event] = [e for r, e in client.seen if r == room and getattr(e, "event_id", None) == event_id]
    assert isinstance(event, MegolmEvent), event  # unreadable to this device for now
    return event


async def _readable(client: E2EUser, event, replicas: dict | None = None):
    """The event decrypted, once its key has come; with `replicas`, the client trusts those devices of its
    account before each sync, as a replica's upkeep does every round (a forwarded key is taken only from them)."""
    from nio import RoomMessageText

    if replicas is not None:
        trust_own_devices(client.client, replicas)
    await client.sync()
    try:
        plain = client.client.decrypt_event(event)
    except Exception:
        return None
    return plain if isinstance(plain, RoomMessageText) else None


async def _event(client: E2EUser, room: str, event_id: str):
    await client.sync()
    return next((e for r, e in client.seen if r == room and getattr(e, "event_id", None) == event_id), None)


async def _rounds(bot: Bot, n: int) -> None:
    done = bot.adapter._syncs + n
    await wait_for(lambda: _at_least(bot, done), timeout=60)


async def _at_least(bot: Bot, rounds: int) -> bool:
    return bot.adapter._syncs >= rounds


async def test_a_replica_gets_the_room_keys_it_asks_for_and_a_device_logged_in_from_outside_none(
        synapse, sqlite_url, tmp_path):
    world = make_world(synapse, joint=1)
    bot_id = world.bot_user["user_id"]
    alice = E2EUser(synapse, world.alice, str(tmp_path / "alice"))
    replica = intruder = None
    try:
        await alice.sync()
        room = await alice.create_encrypted_room([bot_id])
        _with_joint(world, room)
        async with Bot(world, sqlite_url) as bot:
            await wait_for(lambda: _joined(bot, room))
            said = await alice.say(room, OP)
            [reply] = await alice.bot_says(world, room)
            assert reply.body.startswith("OP-1 logged")

            # Both log in as the bot; only the replica wrote itself into the database, as a replica does.
            replica = await _bot_device(synapse, world, tmp_path, "WFREPLICA2")
            intruder = await _bot_device(synapse, world, tmp_path, "INTRUDER")
            _register(bot, replica)
            with bot.parts.db.session() as s:
                registered = devices.replicas(s, bot_id)
            assert sorted(registered) == ["WFREPLICA2", "WFTEST"]  # the bot registered itself at login
            _trust_every_bot_device(intruder)
            asked = {c: _encrypted_event(c, room, said) for c in (replica, intruder)}
            for client, event in asked.items():
                await client.client.request_room_key(event)

            plain = await wait_for(lambda: _readable(replica, asked[replica], registered), 60, interval=0.5)
            assert plain.body == OP  # the replica was answered ...
            await _rounds(bot, QUIET_ROUNDS)
            leaked = await _readable(intruder, asked[intruder])  # ... the intruder, asking with it, was not
            assert leaked is None, f"the intruder was given Alice's room key and read {leaked.body[:40]!r}"

            # What the bot says from now on is not shared with the intruder's device either.
            await alice.say(room, "!help")
            [_, answer] = await alice.bot_says(world, room, at_least=2)
            seen = await wait_for(lambda: _event(intruder, room, answer.event_id))
            assert not hasattr(seen, "body"), f"the intruder read the bot's answer: {seen.body[:60]!r}"
    finally:
        for c in (alice, replica, intruder):
            if c is not None:
                await c.close()


async def test_a_device_logged_in_under_a_registered_replicas_id_with_other_keys_gets_nothing(
        synapse, sqlite_url, tmp_path):
    """A replica retired long ago left its device id and keys in the database; its device is gone from the
    homeserver. Device ids are no secret (everyone in a room sees them): whoever has the bot's password logs in
    under that id, with keys of its own. The id alone does not make it ours: its keys are not the registered
    ones, so it is answered nothing and shares in nothing the bot says (bot/matrix/crypto.py `is_replica`)."""
    import base64
    import os

    world = make_world(synapse, joint=1)
    bot_id = world.bot_user["user_id"]
    alice = E2EUser(synapse, world.alice, str(tmp_path / "alice"))
    intruder = None
    try:
        await alice.sync()
        room = await alice.create_encrypted_room([bot_id])
        _with_joint(world, room)
        async with Bot(world, sqlite_url) as bot:
            await wait_for(lambda: _joined(bot, room))
            said = await alice.say(room, OP)
            [reply] = await alice.bot_says(world, room)
            assert reply.body.startswith("OP-1 logged")
            retired = [base64.b64encode(os.urandom(32)).decode().rstrip("=") for _ in range(2)]
            with bot.parts.db.session() as s:
                devices.register(s, bot_id, "WFRETIRED", *retired, bot.parts.engine.clock())

            intruder = await _bot_device(synapse, world, tmp_path, "WFRETIRED")
            _trust_every_bot_device(intruder)
            event = _encrypted_event(intruder, room, said)
            await intruder.client.request_room_key(event)
            for _ in range(QUIET_ROUNDS):  # a device taken for ours is answered within a round or two
                await _rounds(bot, 1)
                leaked = await _readable(intruder, event)
                assert leaked is None, f"the intruder was given Alice's room key and read {leaked.body[:40]!r}"

            await alice.say(room, "!help")
            [_, answer] = await alice.bot_says(world, room, at_least=2)
            seen = await wait_for(lambda: _event(intruder, room, answer.event_id))
            assert not hasattr(seen, "body"), f"the intruder read the bot's answer: {seen.body[:60]!r}"
    finally:
        for c in (alice, intruder):
            if c is not None:
                await c.close()


async def test_another_users_device_asking_the_bot_for_a_room_key_gets_nothing(synapse, sqlite_url, tmp_path):
    world = make_world(synapse, joint=1)
    bot_id = world.bot_user["user_id"]
    alice = E2EUser(synapse, world.alice, str(tmp_path / "alice"))
    # Mallory is in the room too, with a device that joined after Alice spoke (so it never got her key).
    mallory_who = person(synapse, "Mallory")
    mallory = None
    try:
        await alice.sync()
        room = await alice.create_encrypted_room([bot_id, mallory_who.user_id])
        _with_joint(world, room)
        await asyncio.to_thread(synapse.join, mallory_who.token, room)
        async with Bot(world, sqlite_url) as bot:
            await wait_for(lambda: _joined(bot, room))
            said = await alice.say(room, OP)
            await alice.bot_says(world, room)
            await alice.close()  # Alice's client is gone: only the bot holds her key now
            later = await asyncio.to_thread(synapse.login, mallory_who.user_id.split(":")[0][1:],
                                            mallory_who.password, "MALLORY2")
            mallory = E2EUser(synapse, Person(mallory_who.user_id, later["access_token"], "Mallory", "MALLORY2"),
                              str(tmp_path / "mallory"))
            await mallory.sync()
            event = _encrypted_event(mallory, room, said)
            for device in mallory.client.device_store.active_user_devices(bot_id):
                mallory.client.verify_device(device)
            # nio asks the requester's own devices; any client may as well ask every device of the bot.
            from nio import ToDeviceMessage

            await mallory.client.request_room_key(event)
            request = {"action": "request", "requesting_device_id": "MALLORY2", "request_id": "mallory-1",
                       "body": {"algorithm": event.algorithm, "room_id": room, "sender_key": event.sender_key,
                                "session_id": event.session_id}}
            await mallory.client.to_device(ToDeviceMessage("m.room_key_request", bot_id, "*", request))
            await _rounds(bot, QUIET_ROUNDS)
            leaked = await _readable(mallory, event)
            assert leaked is None, f"Mallory was given Alice's room key and read {leaked.body[:40]!r}"
    finally:
        await alice.close()
        if mallory is not None:
            await mallory.close()
