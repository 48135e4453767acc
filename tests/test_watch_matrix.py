"""The watch on Matrix, against a real Synapse: an alert calls the supervisor on watch with a pill and
m.mentions, and the homeserver notifies that supervisor (a highlight: their phone rings)."""
from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from sqlmodel import select

from watchfloor.storage.tables import AuditRow
from tests.matrix_harness import Bot, bot_messages, history, make_world, say, wait_for

pytestmark = pytest.mark.synapse
_syncs = itertools.count(1)


async def test_alert_pills_the_supervisor_on_watch_and_synapse_notifies_them(synapse, sqlite_url):
    world = make_world(synapse)
    sam = world.sam
    # A second watch room (the partners' watch floor): the change is said there in the alert's thread.
    other = synapse.create_room(sam.token, name="watch-2", invite=[world.bot_user["user_id"]])
    world.settings["zone"][0]["watch_rooms"].append(f"matrix:{other}")
    async with Bot(world, sqlite_url):
        await say(synapse, sam, world.watch, "!watch on")
        [reply] = await bot_messages(world, sam, world.watch)
        assert "Sam (USCG) is on watch in LALB" in reply["content"]["body"]
        await say(synapse, world.alice, world.joint[0], "!op log boarding at=33.74,-118.27 start=+1h end=2h")
        await say(synapse, world.bob, world.joint[1], "!op log patrol at=33.741,-118.271 start=+1h end=2h")
        alert = (await bot_messages(world, sam, world.watch, at_least=2))[-1]["content"]
        assert "CF-1" in alert["body"] and "On watch: Sam (USCG)" in alert["body"]
        assert "⚠ Nobody of CBP is on watch in LALB" in alert["body"]
        assert f'<a href="https://matrix.to/#/{sam.user_id}">Sam</a>' in alert["formatted_body"]
        assert alert["m.mentions"] == {"user_ids": [sam.user_id]}
        assert alert["msgtype"] == "m.text"  # the default push rules never notify for an m.notice

        async def highlighted():
            resp = await asyncio.to_thread(synapse.request, "GET", "/_matrix/client/v3/notifications",
                                           token=sam.token)
            return [n for n in resp.get("notifications", [])
                    if "CF-1" in n["event"]["content"].get("body", "")
                    and any(a == {"set_tweak": "highlight"} or a == {"set_tweak": "highlight", "value": True}
                            for a in n["actions"])]
        assert await wait_for(highlighted)

        # Acknowledged from the watch room: the alert itself is replaced by its current state (m.replace).
        alert_id = (await bot_messages(world, sam, world.watch, at_least=2))[-1]["event_id"]
        await say(synapse, sam, world.watch, "!conflicts ack CF-1")

        async def replaced():
            events = await history(synapse, sam, world.watch)
            return [e for e in events if e["sender"] == world.bot_user["user_id"]
                    and (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
                    and e["content"]["m.relates_to"]["event_id"] == alert_id]
        [edit] = await wait_for(replaced)
        new = edit["content"]["m.new_content"]
        assert "CF-1 overlap" in new["body"] and "owned by" in new["body"] and "not acknowledged" not in new["body"]
        assert "m.mentions" not in edit["content"]  # an edit does not ring the phones again

        # There: Sam going on watch (said once, to everyone in the zone's watch rooms), the alert, its changes.
        told, elsewhere = (await bot_messages(world, sam, other, at_least=2))[:2]
        assert told["content"]["body"].startswith("👁 [USCG] Sam is on watch in LALB until ")  # 12 h: no handovers
        root = elsewhere["event_id"]
        assert "ALERT" in elsewhere["content"]["body"] and "m.relates_to" not in elsewhere["content"]

        async def in_other_room():
            events = await history(synapse, sam, other)
            mine = [e for e in events if e["sender"] == world.bot_user["user_id"] and e["type"] == "m.room.message"]
            edits = [e for e in mine if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"]
            threaded = [e for e in mine if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.thread"]
            return (edits, threaded) if edits and threaded else None
        edits, threaded = await wait_for(in_other_room)
        assert [e["content"]["m.relates_to"]["event_id"] for e in edits] == [root]
        assert "owned by" in edits[0]["content"]["m.new_content"]["body"]
        [said] = threaded
        assert said["content"]["m.relates_to"]["event_id"] == root and "CF-1 acknowledged" in said["content"]["body"]


async def test_a_reaction_acknowledges_the_alert_once_and_only_for_a_supervisor(synapse, sqlite_url):
    world = make_world(synapse)
    sam, bob = world.sam, world.bob
    async with Bot(world, sqlite_url) as bot:
        await say(synapse, world.alice, world.joint[0], "!op log boarding at=33.74,-118.27 start=+1h end=2h")
        await say(synapse, bob, world.joint[1], "!op log patrol at=33.741,-118.271 start=+1h end=2h")
        [alert] = await bot_messages(world, sam, world.watch)
        assert "CF-1" in alert["content"]["body"]

        def react(who, key):
            return synapse.send_event(who.token, world.watch, "m.reaction", {
                "m.relates_to": {"rel_type": "m.annotation", "event_id": alert["event_id"], "key": key}})

        def status():
            from watchfloor.storage.tables import ConflictRow
            with bot.parts.db.session() as s:
                return s.get(ConflictRow, 1).status

        await asyncio.to_thread(react, world.alice, "✅")          # a member, not a supervisor
        # The refusal is for her alone: in her direct room with the bot (is_direct, so her client lists it
        # under people), not in the watch room.
        direct = await wait_for(lambda: direct_invites(synapse, world.alice))
        assert len(direct) == 1
        await asyncio.to_thread(synapse.join, world.alice.token, direct[0])
        [refusal] = await bot_messages(world, world.alice, direct[0])
        assert refusal["content"]["body"].startswith("⚠ permission: only a watch supervisor may use 'conflicts ack'")
        assert await asyncio.to_thread(status) == "open"
        await asyncio.to_thread(react, world.alice, "👍")          # again: the same direct room, no new one
        assert len(await bot_messages(world, world.alice, direct[0], at_least=2)) == 2
        assert await direct_invites(synapse, world.alice) == []
        with bot.parts.db.session() as s:
            trail = s.exec(select(AuditRow).where(AuditRow.action == "conflict.ack")).all()
        assert trail == []

        await asyncio.to_thread(react, sam, "👍🏽")                # from the supervisor's phone
        messages = await bot_messages(world, sam, world.watch, at_least=3)
        assert not [m for m in messages if "permission" in m["content"].get("body", "")]
        assert await asyncio.to_thread(status) == "acked"
        edits = [m for m in messages if (m["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"]
        assert len(edits) == 1 and edits[0]["content"]["m.relates_to"]["event_id"] == alert["event_id"]
        assert "owned by" in edits[0]["content"]["m.new_content"]["body"]
        said = [m for m in messages if "CF-1 acknowledged" in m["content"].get("body", "")]
        assert len(said) == 1

        await asyncio.to_thread(react, sam, "✅")                  # a second reaction: nothing more
        await say(synapse, sam, world.watch, "!watch")             # something that is answered, to wait on
        after = await bot_messages(world, sam, world.watch, at_least=len(messages) + 1)
        assert len(after) == len(messages) + 1 and "On watch" in after[-1]["content"]["body"]


async def direct_invites(synapse, who) -> list[str]:
    """The rooms `who` is invited to as a direct chat (the invite's member event says `is_direct`)."""
    # Synapse answers the same initial sync from a cache for a while: a filter of its own makes each a new one.
    fresh = json.dumps({"room": {"timeline": {"limit": next(_syncs)}}})
    resp = await asyncio.to_thread(synapse.request, "GET", "/_matrix/client/v3/sync", token=who.token,
                                   query={"timeout": 0, "filter": fresh})
    out = []
    for room_id, room in (resp.get("rooms", {}).get("invite") or {}).items():
        for e in room.get("invite_state", {}).get("events", []):
            if e.get("type") == "m.room.member" and e.get("state_key") == who.user_id \
                    and e.get("content", {}).get("is_direct"):
                out.append(room_id)
    return out
