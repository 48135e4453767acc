"""A listing longer than one Matrix event (65,536 bytes) reaches a real homeserver as several events, in order,
with every conflict in them, instead of being refused (M_TOO_LARGE) and lost."""
from __future__ import annotations

import json
import re

import pytest
from sqlmodel import select

from watchfloor.storage.tables import OutboxRow
from tests.helpers import make_parts
from tests.matrix_harness import Bot, from_bot, history, make_world, say, wait_for
from tests.test_delivery_paging import overlapping_ops

pytestmark = pytest.mark.synapse
REF = re.compile(r"CF-\d+")
AGENCIES = ["USCG", "CBP", "AMO", "HSI", "ICE", "FBI", "DEA", "CHP", "PD", "PORT", "NOAA"]


async def test_a_listing_of_400_conflicts_reaches_the_homeserver_as_several_events(synapse, sqlite_url, tmp_path):
    world = make_world(synapse)
    setup = make_parts(sqlite_url, **world.settings)
    overlapping_ops(setup, tmp_path, 30, AGENCIES)
    setup.db.dispose()
    async with Bot(world, sqlite_url) as bot:
        asked = await say(synapse, world.alice, world.watch, "!conflicts")

        def listing_row():
            with bot.parts.db.session() as s:
                return s.exec(select(OutboxRow).where(OutboxRow.kind == "reply",
                                                      OutboxRow.room == f"matrix:{world.watch}")).first()

        row = await wait_for(lambda: _async(listing_row), timeout=30)
        expected = REF.findall(json.loads(row.payload)["text"])
        assert len(set(expected)) >= 400

        async def answers():
            events = from_bot(await history(synapse, world.alice, world.watch), world.bot_user["user_id"])
            mine = [e for e in events
                    if e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == asked]
            return mine if len(REF.findall("\n".join(e["content"]["body"] for e in mine))) >= len(expected) \
                else None

        events = await wait_for(answers, timeout=60)
    assert len(events) > 1
    assert REF.findall("\n".join(e["content"]["body"] for e in events)) == expected  # all, once, in order
    assert REF.findall("\n".join(e["content"]["formatted_body"] for e in events)) == expected


async def _async(fn):
    import asyncio

    return await asyncio.to_thread(fn)
