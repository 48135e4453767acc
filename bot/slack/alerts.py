"""Alerts kept current where they were posted: when one of an alert's conflicts is acknowledged or resolved,
here or in another watch channel, the alert message itself is changed (`chat.update`) to show the owner or the
outcome, and stops offering buttons that no longer apply."""
from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from sqlmodel import col, select

from watchfloor.storage.kv import kv_get, kv_set
from watchfloor.storage.outbox import origin_of
from watchfloor.storage.outbox import payload as row_payload
from watchfloor.storage.tables import OutboxRow

from watchfloor.bot.slack.markup import MAX_TEXT, escape

log = logging.getLogger("watchfloor.slack")


class SlackAlerts:
    def __init__(self, parts, client):
        self.parts = parts
        self.client = client

    async def update(self, room: str, channel: str, alert_ts: str, change: dict[str, Any], resolved: bool,
                     owned: bool = True) -> None:
        """Show `change` (a rendered conflict change) in the alert posted as `alert_ts` in `room`."""
        key = f"slack:alert:{room}:{alert_ts}"

        def load() -> tuple[list[dict], str] | None:
            with self.parts.db.session() as s:
                row = origin_of(s, room, alert_ts)
                current = kv_get(s, key)
                if row is None:
                    return None
                p = row_payload(row)
                return (json.loads(current) if current else p.get("blocks") or []), p.get("text") or ""
        found = await asyncio.to_thread(load)
        if found is None:
            log.warning("slack: no stored alert %s in %s to update", alert_ts, room)
            return
        blocks, text = found
        new_blocks = apply_change(blocks, change, resolved, owned)
        await self.client.chat_update(channel=channel, ts=alert_ts, text=escape(text[:MAX_TEXT]), blocks=new_blocks)

        def store() -> None:
            with self.parts.db.session() as s:
                kv_set(s, key, json.dumps(new_blocks), self.parts.engine.clock())
        await asyncio.to_thread(store)

    async def update_for_notice(self, room: str, channel: str, payload: dict[str, Any]) -> str | None:
        """A conflict acknowledged or resolved elsewhere: this room's alert stops offering stale buttons.
        Returns the alert's ts (the notice goes in its thread), None when the room has no alert for it."""
        cf_id = payload["conflict_update"]

        def find() -> str | None:
            with self.parts.db.session() as s:
                rows = s.exec(select(OutboxRow).where(
                    OutboxRow.room == room, col(OutboxRow.kind).in_(("alert", "escalation")),
                    OutboxRow.status == "sent").order_by(col(OutboxRow.id).desc()).limit(200)).all()
                for row in rows:
                    if cf_id in (row_payload(row).get("conflicts") or []) and row.remote_id:
                        return row.remote_id
            return None
        alert_ts = await asyncio.to_thread(find)
        if alert_ts:
            first = (payload.get("text") or "").split("\n", 1)[0]
            state = payload.get("conflict_state")  # absent in notices queued before it was written
            if state is None:
                await self.update(room, channel, alert_ts, payload, resolved="resolved" in first)
            else:
                await self.update(room, channel, alert_ts, payload, resolved=state in ("resolved", "closed"),
                                  owned=state != "open")
        return alert_ts


ACK_REACTIONS = frozenset({"white_check_mark", "heavy_check_mark", "+1", "thumbsup"})


async def conflicts_of_alert(parts, room: str, ts: str) -> list[int]:
    """The conflicts an alert or escalation the bot posted as `ts` in `room` offers to acknowledge; [] for any
    other message."""
    def find() -> list[int]:
        with parts.db.session() as s:
            row = origin_of(s, room, ts)
            if row is None or row.kind not in ("alert", "escalation"):
                return []
            return [int(i) for i in row_payload(row).get("conflicts") or []]
    return await asyncio.to_thread(find)


def apply_change(blocks: list[dict[str, Any]], change: dict[str, Any], resolved: bool,
                 owned: bool = True) -> list[dict[str, Any]]:
    """The alert's blocks with one conflict's part replaced by the rendered change (who owns it, how it ended).

    The alert template puts each conflict in a section starting with its id, followed by its buttons, whose
    value is the id. Acknowledged: the section shows the owner and only the Resolve buttons stay.
    Resolved (or closed): the section shows the outcome and the buttons go. Not `owned` (snoozed, escalated,
    woken): all its buttons stay.
    """
    change_blocks = [b for b in change.get("blocks") or [] if b.get("type") == "section"]
    ref = _ref_of(change_blocks)
    if ref is None:
        return blocks
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") == "section" and _starts_with_ref(block, ref):
            out.extend(change_blocks)
            continue
        if block.get("type") == "actions" and any(e.get("value") == ref for e in block.get("elements", [])):
            if resolved:
                continue
            kept = [e for e in block["elements"]
                    if not owned or not str(e.get("action_id", "")).startswith("ack:")]
            if kept:
                out.append({**block, "elements": kept})
            continue
        out.append(block)
    return out[:50]


def _ref_of(blocks: list[dict[str, Any]]) -> str | None:
    if not blocks:
        return None
    m = re.match(r"^\*?(CF-\d+)\*?", blocks[0].get("text", {}).get("text", ""))
    return m.group(1) if m else None


def _starts_with_ref(block: dict[str, Any], ref: str) -> bool:
    text = block.get("text", {}).get("text", "")
    return bool(re.match(rf"^\*?{re.escape(ref)}\*?\s", text))
