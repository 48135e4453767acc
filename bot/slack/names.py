"""Slack user and channel names, cached in the database so a message needs no Web API call for them.

A name is a courtesy: when Slack or the database cannot give one, the id (or Slack's own label) stands in and
the message goes on.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from watchfloor.storage.kv import kv_get, kv_set

log = logging.getLogger("watchfloor.slack")
NAME_TTL = timedelta(hours=12)


class SlackNames:
    def __init__(self, parts, client):
        self.parts = parts
        self.client = client

    async def user(self, user: str, fallback: str | None = None) -> str:
        return await self.user_name(user) or fallback or user

    async def user_name(self, user: str) -> str | None:
        """The user's display name (`users.info`)."""
        async def fetch() -> str | None:
            info = (await self.client.users_info(user=user)).get("user") or {}
            profile = info.get("profile") or {}
            return profile.get("display_name") or profile.get("real_name") or info.get("real_name") \
                or info.get("name")
        return await self._cached(f"slack:user:{user}", fetch)

    async def channel(self, channel: str) -> str | None:
        """The channel's name without the `#` (`conversations.info`)."""
        async def fetch() -> str | None:
            return ((await self.client.conversations_info(channel=channel)).get("channel") or {}).get("name")
        return await self._cached(f"slack:channel:{channel}", fetch)

    async def _cached(self, key: str, fetch: Callable[[], Awaitable[str | None]]) -> str | None:
        now = self.parts.engine.clock()

        def cached() -> str | None:
            with self.parts.db.session() as s:
                raw = kv_get(s, key)
            if raw:
                data = json.loads(raw)
                if now.timestamp() - data.get("at", 0) < NAME_TTL.total_seconds():
                    return data["name"]
            return None

        try:
            name = await asyncio.to_thread(cached)
        except Exception as e:  # the database is away: ask Slack
            log.warning("slack: name cache unreadable: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
            name = None
        if name:
            return name
        try:
            name = await fetch()
        except Exception as e:
            log.warning("slack: looking up %s failed: %s", key, e)
            return None
        if not name:
            return None

        def store() -> None:
            with self.parts.db.session() as s:
                kv_set(s, key, json.dumps({"name": name, "at": now.timestamp()}), now)
        try:
            await asyncio.to_thread(store)
        except Exception:  # two requests caching the same name at once (either wins), or the database is away
            log.debug("slack: name cache write for %s failed", key)
        return name
