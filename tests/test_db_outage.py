"""A database that is briefly unreachable loses no chat message: the bot keeps the Matrix events it could not
handle (its sync token stays before them), retries until the database answers, then answers each command once
and relays each bridged message once. Real Synapse, real PostgreSQL behind a TCP proxy the test cuts."""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.fixtures.tcp_proxy import tcp_proxy
from tests.matrix_harness import Bot, bodies, bot_messages, from_bot, history, make_world, say, wait_for

PG = ("127.0.0.1", 5432)


def _replies_to(events, event_id):
    return [e for e in events if (e["content"].get("m.relates_to") or {}).get("m.in_reply_to", {})
            .get("event_id") == event_id]


async def _bot_events(world, room):
    return from_bot(await history(world.synapse, world.alice, room), world.bot_user["user_id"])


async def _settled(world, a, b, marker: str):
    """Wait until a message said after everything else has been relayed both ways: whatever the bot was going to
    post for earlier messages (in order, per room) is posted by then."""
    await say(world.synapse, world.alice, a, f"{marker} from a")
    await say(world.synapse, world.bob, b, f"{marker} from b")

    async def both():
        return (f"[CBP] Alice: {marker} from a" in bodies(await _bot_events(world, b))
                and f"[USCG] Bob: {marker} from b" in bodies(await _bot_events(world, a)))
    await wait_for(both, timeout=30)


@pytest.mark.synapse
async def test_commands_and_bridged_messages_said_while_the_database_is_down_are_handled_once_it_is_back(
        synapse, pg_url):
    world = make_world(synapse)
    a, b = world.joint
    tries: Counter[str] = Counter()
    kept_trying = asyncio.Event()

    async def count(msg, handle):
        tries[msg.text] += 1
        if tries["!zone"] >= 5:  # the message behind it waits its turn (order is kept)
            kept_trying.set()
        await handle(msg)

    with tcp_proxy(PG) as proxy:
        async with Bot(world, proxy.url_for(pg_url), around=count) as bot:
            await say(synapse, world.alice, a, "!help")
            await bot_messages(world, world.alice, a)

            proxy.cut()  # every connection dropped, new ones refused
            command = await say(synapse, world.alice, a, "!zone")
            await say(synapse, world.alice, a, "pilot boards at 0600")
            # The bot keeps trying (backing off) past the point where it used to give up: three tries a second apart.
            await asyncio.wait_for(kept_trying.wait(), 60)
            assert proxy.refused > 0
            assert _replies_to(await _bot_events(world, a), command) == []
            proxy.restore()

            await _settled(world, a, b, "after the outage")
            in_a, in_b = await _bot_events(world, a), await _bot_events(world, b)
            [answer] = _replies_to(in_a, command)
            assert "LALB" in answer["content"]["body"] and "went wrong" not in answer["content"]["body"]
            assert bodies(in_b).count("[CBP] Alice: pilot boards at 0600") == 1
            assert bot.adapter.connected


@pytest.mark.synapse
async def test_the_database_gone_while_a_message_is_handled_and_back_before_the_token_is_stored(synapse, pg_url):
    """The worst moment for a blip: the database goes away just as the bot handles a message and is back by the
    time the bot would store its sync token. Here each of two messages meets the outage on its first three tries
    (the bot used to give up on a bridged message after three, and to store the token past a command it could not
    answer): the command is still answered for real, once, and the message relayed once."""
    world = make_world(synapse)
    a, b = world.joint
    flaky = {"!zone": 3, "pilot boards at 0600": 3}
    tries: Counter[str] = Counter()
    with tcp_proxy(PG) as proxy:
        async def around(msg, handle):
            tries[msg.text] += 1
            if tries[msg.text] > flaky.get(msg.text, 0):
                return await handle(msg)
            proxy.cut()
            try:
                await handle(msg)
            finally:
                proxy.restore()

        async with Bot(world, proxy.url_for(pg_url), around=around):
            await say(synapse, world.alice, a, "!help")
            await bot_messages(world, world.alice, a)
            command = await say(synapse, world.alice, a, "!zone")
            await say(synapse, world.alice, a, "pilot boards at 0600")

            await _settled(world, a, b, "after the blips")
            in_a, in_b = await _bot_events(world, a), await _bot_events(world, b)
            [answer] = _replies_to(in_a, command)
            assert "LALB" in answer["content"]["body"] and "went wrong" not in answer["content"]["body"]
            assert bodies(in_b).count("[CBP] Alice: pilot boards at 0600") == 1
            assert tries["!zone"] > 3 and tries["pilot boards at 0600"] > 3


@pytest.mark.synapse
async def test_a_bug_is_not_an_outage_it_is_answered_once_and_not_retried_forever(synapse, sqlite_url):
    """Only an unreachable database is waited out: a command whose handler breaks is answered "something went
    wrong" once, and a message whose relaying breaks is tried a few times and left, so the room goes on."""
    world = make_world(synapse)
    a, b = world.joint
    tries: Counter[str] = Counter()

    async def breaks_on_boom(msg, handle):
        tries[msg.text] += 1
        if msg.text == "boom":
            raise RuntimeError("a bug in relaying")
        await handle(msg)

    async with Bot(world, sqlite_url, around=breaks_on_boom) as bot:
        def broken(_ctx):
            raise RuntimeError("a bug in a handler")
        bot.parts.engine.handlers["zone"] = broken
        command = await say(synapse, world.alice, a, "!zone")
        await say(synapse, world.alice, a, "boom")
        await _settled(world, a, b, "still here")
        in_a, in_b = await _bot_events(world, a), await _bot_events(world, b)
    [answer] = _replies_to(in_a, command)
    assert "went wrong" in answer["content"]["body"] and "Traceback" not in answer["content"]["body"]
    assert not any("boom" in t for t in bodies(in_b))
    assert tries["!zone"] == 1 and tries["boom"] == 3


def test_what_counts_as_the_database_being_unreachable(sqlite_url, tmp_path):
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from watchfloor.storage.db import Database
    from watchfloor.storage.outage import unreachable

    def error_of(db: Database, sql: str) -> Exception:
        try:
            with db.session() as s:
                s.connection().execute(text(sql))
        except Exception as e:
            return e
        finally:
            db.dispose()
        raise AssertionError(f"{sql} did not fail")

    refused = error_of(Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"), "SELECT 1")
    assert unreachable(refused)
    assert not unreachable(error_of(Database(sqlite_url), "SELECT * FROM no_such_table"))  # a bug
    assert not unreachable(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not unreachable(ValueError("bad input"))
