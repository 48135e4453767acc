"""The bridge between a zone's Matrix joint rooms, against a real Synapse: attribution, replies, edits,
redactions, markings, no echo, and commands staying in their room."""
from __future__ import annotations

import asyncio

import pytest

from tests.matrix_harness import Bot, bodies, bot_messages, from_bot, history, make_world, say, wait_for

pytestmark = pytest.mark.synapse


async def test_bridge_both_ways_keeps_replies_and_never_echoes(synapse, db_url):
    world = make_world(synapse)
    a, b = world.joint
    async with Bot(world, db_url):
        hello = await say(synapse, world.alice, a, "pilot boards at 0600")
        [copy] = await bot_messages(world, world.bob, b)
        assert copy["content"]["body"] == "[CBP] Alice: pilot boards at 0600"
        assert copy["content"]["msgtype"] == "m.text"
        assert copy["content"]["formatted_body"] == "<b>[CBP] Alice</b>: pilot boards at 0600"

        # Bob answers the copy in his room; in Alice's room the answer is a reply to her own message.
        await say(synapse, world.bob, b, "copy, we escort",
                  **{"m.relates_to": {"m.in_reply_to": {"event_id": copy["event_id"]}}})
        [answer] = await bot_messages(world, world.alice, a)
        assert answer["content"]["body"] == "[USCG] Bob: copy, we escort"
        assert answer["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == hello

        # A reply to the original is a reply to the copy on the other side.
        await say(synapse, world.alice, a, "thanks", **{"m.relates_to": {"m.in_reply_to": {"event_id": hello}}})
        copies = await bot_messages(world, world.bob, b, at_least=2)
        assert copies[-1]["content"]["body"] == "[CBP] Alice: thanks"
        assert copies[-1]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == copy["event_id"]

        # Commands and their replies stay in their room.
        await say(synapse, world.alice, a, "!zone")
        await wait_for(lambda: _has_reply(world, a, "LALB"))
        await say(synapse, world.bob, b, "last one")
        await wait_for(lambda: _bodies_in(world, a, "[USCG] Bob: last one"))
        # An echo of a copy, or the command or its reply relayed, would be posted before this marker's copy: the
        # bot handles each room's messages in order and posts in each room in order.
        await say(synapse, world.alice, a, "over")
        await wait_for(lambda: _bodies_in(world, b, "[CBP] Alice: over"))
        seen_b = bodies(from_bot(await history(synapse, world.bob, b), world.bot_user["user_id"]))
        seen_a = bodies(from_bot(await history(synapse, world.alice, a), world.bot_user["user_id"]))
        assert seen_b == ["[CBP] Alice: pilot boards at 0600", "[CBP] Alice: thanks", "[CBP] Alice: over"]
        assert len(seen_a) == 3 and "LALB" in seen_a[1]  # the reply to `!zone`, only here
        assert [seen_a[0], seen_a[2]] == ["[USCG] Bob: copy, we escort", "[USCG] Bob: last one"]


async def _has_reply(world, room, text):
    return [b for b in bodies(from_bot(await history(world.synapse, world.alice, room), world.bot_user["user_id"]))
            if text in (b or "")]


async def _bodies_in(world, room, text):
    return text in bodies(from_bot(await history(world.synapse, world.alice, room), world.bot_user["user_id"]))


async def test_edits_and_redactions_follow_the_copies(synapse, sqlite_url):
    world = make_world(synapse, joint=3)
    a, b, c = world.joint
    async with Bot(world, sqlite_url):
        original = await say(synapse, world.alice, a, "meet at berth 12")
        [copy_b] = await bot_messages(world, world.bob, b)
        [copy_c] = await bot_messages(world, world.bob, c)

        await say(synapse, world.alice, a, "* meet at berth 14", **{
            "m.new_content": {"msgtype": "m.text", "body": "meet at berth 14"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original}})
        for room, copy in ((b, copy_b), (c, copy_c)):
            _, edit = await bot_messages(world, world.bob, room, at_least=2)
            assert edit["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": copy["event_id"]}
            assert edit["content"]["m.new_content"]["body"] == "[CBP] Alice: meet at berth 14"

        await asyncio.to_thread(synapse.redact, world.alice.token, a, original)
        for room, copy in ((b, copy_b), (c, copy_c)):
            [redaction] = await bot_messages(world, world.bob, room, etype="m.room.redaction")
            assert redaction["redacts"] == copy["event_id"] or redaction["content"].get("redacts") == copy["event_id"]
            gone = [e for e in await history(synapse, world.bob, room) if e["event_id"] == copy["event_id"]]
            assert gone[0]["content"] == {}


async def test_marked_messages_go_only_where_cleared(synapse, sqlite_url):
    world = make_world(synapse, joint=3, clearances=[["UNCLASS", "FOUO", "LES"], ["UNCLASS"], ["UNCLASS", "FOUO"]])
    a, unclass, fouo = world.joint
    async with Bot(world, sqlite_url, bridge={"withheld_notice": True}):
        await say(synapse, world.alice, a, "[LES] informant says the Ocean Star carries cocaine")
        await say(synapse, world.alice, a, "[FOUO] boarding team of six")
        await say(synapse, world.alice, a, "weather is fine")
        await say(synapse, world.alice, a, "[LES] slips aboard at 0300", msgtype="m.emote")  # `/me [LES] ...`
        await say(synapse, world.alice, a, "waves", msgtype="m.emote")
        in_unclass = bodies(await bot_messages(world, world.bob, unclass, at_least=5))
        in_fouo = bodies(await bot_messages(world, world.bob, fouo, at_least=5))
    assert in_unclass[0].startswith("A LES message was withheld")
    assert in_unclass[1].startswith("A FOUO message was withheld")
    assert in_unclass[2] == "[CBP] Alice: weather is fine"
    assert in_unclass[3].startswith("A LES message was withheld")
    assert in_unclass[4] == "* [CBP] Alice waves"
    assert in_fouo[0].startswith("A LES message was withheld")
    assert in_fouo[1:] == ["[CBP] Alice: [FOUO] boarding team of six", "[CBP] Alice: weather is fine",
                           in_unclass[3], "* [CBP] Alice waves"]
    assert not any("cocaine" in t or "six" in t or "0300" in t for t in in_unclass)
    assert not any("0300" in t for t in in_fouo)


async def test_withheld_without_notice_leaves_no_trace(synapse, sqlite_url):
    world = make_world(synapse, clearances=[["UNCLASS", "FOUO", "LES"], ["UNCLASS"]])
    a, b = world.joint
    async with Bot(world, sqlite_url):
        await say(synapse, world.alice, a, "[LES] source is reliable")
        await say(synapse, world.alice, a, "all clear")
        # Anything of the first message would be posted before the copy of the second.
        await wait_for(lambda: _bodies_in(world, b, "[CBP] Alice: all clear"))
        seen = bodies(from_bot(await history(synapse, world.bob, b), world.bot_user["user_id"]))
    assert seen == ["[CBP] Alice: all clear"]


async def test_mentions_and_links_reach_the_other_room_as_names_and_plain_links(synapse, sqlite_url):
    world = make_world(synapse)
    a, b = world.joint
    bob, sam = world.bob.user_id, world.sam.user_id
    async with Bot(world, sqlite_url):
        # A pill: the HTML names Bob by a matrix.to link, the plain body by his user id.
        await say(synapse, world.alice, a, f"{bob} can you check berth 12?", format="org.matrix.custom.html",
                  formatted_body=f'<a href="https://matrix.to/#/{bob}">Bob</a> can you check berth 12?')
        await say(synapse, world.alice, a, f"ask {sam}, he has the list")  # a bare user id, no HTML
        await say(synapse, world.alice, a, "see the plan", format="org.matrix.custom.html",
                  formatted_body='see the <a href="https://example.org/plan?v=2">plan</a>')
        copies = bodies(await bot_messages(world, world.bob, b, at_least=3))
    assert copies == ["[CBP] Alice: Bob can you check berth 12?", "[CBP] Alice: ask Sam, he has the list",
                      "[CBP] Alice: see the plan (https://example.org/plan?v=2)"]
    assert not any("<a" in c or ":localhost" in c or "matrix.to" in c for c in copies)
