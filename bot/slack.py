"""The Slack adapter: slash commands, `!` messages, alert buttons and the joint-channel bridge over Bolt.

Slack gives us 3 seconds to answer a request, so every listener only acknowledges; the work runs afterwards
in a Bolt lazy listener and its answer goes through the stored outbox (the delivery worker calls `send`).
Slack retries requests it thinks we missed and Bolt does not drop them: every message is claimed once by id
in the database (the engine's handled_event row for commands; the bridge's claim for relayed messages), so a
retry is never acted on twice.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import col, select

from watchfloor.commands.grammar import is_command
from watchfloor.commands.message import ChatMessage
from watchfloor.config import SlackConfig
from watchfloor.storage.kv import kv_get, kv_set
from watchfloor.storage.outbox import origin_of
from watchfloor.storage.outbox import payload as row_payload
from watchfloor.storage.tables import OutboxRow

from .adapter import OnMessage, PermanentSendError, TransientSendError

log = logging.getLogger("watchfloor.slack")

SLASH_COMMANDS = ("op", "target", "conflicts", "brief", "zone", "watchfloor")
_SLASH = re.compile(r"^/(" + "|".join(SLASH_COMMANDS) + r")$")
_BUTTON = re.compile(r"^(ack|resolve):")
_TS = re.compile(r"^\d+\.\d+$")
ACTION_PREFIX = "slack-action:"
NAME_TTL = timedelta(hours=12)
MAX_TEXT = 39_000  # Slack cuts message text at 40,000 characters

# Slack errors that are about Slack, not about the message: try again later rather than drop it.
_TRANSIENT_ERRORS = {"ratelimited", "rate_limited", "service_unavailable", "fatal_error", "internal_error",
                     "request_timeout", "team_added_to_org", "invalid_auth", "not_authed", "account_inactive",
                     "token_revoked", "token_expired"}
# New messages the bridge relays; every other subtype (joins, topic changes, bot posts) is not people talking.
_RELAYED_SUBTYPES = {None, "thread_broadcast", "file_share", "me_message"}


class SlackAdapter:
    platform = "slack"

    def __init__(self, parts, config: SlackConfig, *, wake: Callable[[], None] | None = None):
        self.parts = parts
        self.config = config
        self.wake = wake  # called after a command put rows in the outbox, so delivery need not wait for a poll
        kwargs: dict[str, Any] = {"token": config.bot_token.get_secret_value()}
        if config.api_url:
            kwargs["base_url"] = config.api_url if config.api_url.endswith("/") else config.api_url + "/"
        self.client = AsyncWebClient(**kwargs)
        self.app = AsyncApp(signing_secret=config.signing_secret.get_secret_value(), client=self.client,
                            process_before_response=False)
        self.on_message: OnMessage | None = None
        self.url: str | None = None  # where Slack posts events, commands and interactivity (HTTP mode)
        self._runner: aiohttp.web.AppRunner | None = None
        self._socket = None
        self._session: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task] = set()
        self._register()

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self, on_message: OnMessage | None = None) -> None:
        self.on_message = on_message
        if self.config.app_token is not None:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(self.app, self.config.app_token.get_secret_value())
            await self._socket.connect_async()
            return
        from aiohttp import web
        from slack_bolt.app.async_server import AsyncSlackAppServer

        server = AsyncSlackAppServer(port=self.config.port, path="/slack/events", app=self.app,
                                     host=self.config.host)
        self._runner = web.AppRunner(server.web_app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.host, self.config.port).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/slack/events"
        log.info("slack: listening at %s", self.url)

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # Work already acknowledged to Slack finishes: Slack will not send it again.
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=3)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def healthy(self) -> bool:
        try:
            return bool((await self.client.auth_test()).get("ok"))
        except Exception:
            return False

    # --- incoming ----------------------------------------------------------------------------------------

    def _register(self) -> None:
        async def ack_now(ack):
            await ack()

        def tracked(work):
            async def run(body):
                task = asyncio.current_task()
                self._inflight.add(task)
                try:
                    await work(body)
                except Exception:
                    log.exception("slack: handling a request failed")
                finally:
                    self._inflight.discard(task)
            return run

        self.app.command(_SLASH)(ack=ack_now, lazy=[tracked(self._on_slash)])
        self.app.action(_BUTTON)(ack=ack_now, lazy=[tracked(self._on_button)])
        self.app.event("message")(ack=ack_now, lazy=[tracked(self._on_message_event)])

        @self.app.error
        async def _errors(error, body):
            # A failure must never reach the user as a stack trace; the log keeps it.
            log.exception("slack: request failed", exc_info=error)

    async def _on_slash(self, body: dict[str, Any]) -> None:
        name = body.get("command", "").lstrip("/")
        text = f"/{name} {body.get('text', '')}".strip()
        user = body.get("user_id", "")
        msg = ChatMessage(
            platform="slack", room=f"slack:{body.get('channel_id', '')}", sender=f"slack:{user}", text=text,
            # Slack sends a fresh trigger_id per invocation and the same one on a retry.
            event_id=f"cmd:{body.get('trigger_id') or body.get('response_url', '')}",
            sender_name=await self.display_name(user, body.get("user_name")),
            extra={"response_url": body.get("response_url")} if body.get("response_url") else {},
        )
        await self._run_command(msg)

    async def _on_button(self, body: dict[str, Any]) -> None:
        action = (body.get("actions") or [{}])[0]
        action_id = action.get("action_id", "")
        parts = action_id.split(":")
        if parts[0] == "ack" and len(parts) == 2:
            text = f"/conflicts ack {parts[1]}"
        elif parts[0] == "resolve" and len(parts) == 3:
            text = f"/conflicts resolve {parts[2]} {parts[1]}"
        else:
            return
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
        message_ts = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts", "")
        user = (body.get("user") or {}).get("id", "")
        extra = {"response_url": body["response_url"]} if body.get("response_url") else {}
        msg = ChatMessage(
            platform="slack", room=f"slack:{channel}", sender=f"slack:{user}", text=text,
            # The id names the alert message, so `send` knows to change that message in place.
            event_id=f"{ACTION_PREFIX}{channel}:{message_ts}:{body.get('trigger_id', '')}:{action_id}",
            sender_name=await self.display_name(user, (body.get("user") or {}).get("name")),
            extra=extra,
        )
        await self._run_command(msg)

    async def _on_message_event(self, body: dict[str, Any]) -> None:
        event = body.get("event") or {}
        channel = event.get("channel", "")
        room = f"slack:{channel}"
        subtype = event.get("subtype")
        if subtype == "message_changed":
            await self._on_edit(room, event)
        elif subtype == "message_deleted":
            await self._on_delete(room, event)
        elif subtype in _RELAYED_SUBTYPES and not event.get("bot_id") and event.get("user"):
            await self._on_new(room, event)

    async def _on_new(self, room: str, event: dict[str, Any]) -> None:
        text, ts, user = _unescape(event.get("text") or ""), event.get("ts", ""), event["user"]
        thread = event.get("thread_ts")
        if is_command(text) and text.lstrip().startswith("!"):
            extra = {"thread": thread} if thread else {}
            msg = ChatMessage(platform="slack", room=room, sender=f"slack:{user}", text=text.strip(),
                              event_id=f"msg:{room}:{ts}", sender_name=await self.display_name(user), extra=extra)
            await self._run_command(msg)
            return
        if not self._bridged(room) or await self._is_our_copy(room, ts):
            return
        msg = ChatMessage(platform="slack", room=room, sender=f"slack:{user}", text=text, event_id=ts,
                          sender_name=await self.display_name(user),
                          reply_to=thread if thread and thread != ts else None,
                          extra={"thread": thread} if thread else {})
        await self._deliver(msg)

    async def _on_edit(self, room: str, event: dict[str, Any]) -> None:
        new = event.get("message") or {}
        old = event.get("previous_message") or {}
        ts, user = new.get("ts", ""), new.get("user")
        if (new.get("bot_id") or not user or not self._bridged(room) or await self._is_our_copy(room, ts)
                or is_command(old.get("text") or "") or new.get("text") == old.get("text")):
            return  # link unfurls also arrive as message_changed with the same text
        msg = ChatMessage(platform="slack", room=room, sender=f"slack:{user}", text=_unescape(new.get("text") or ""),
                          event_id=f"{ts}:edit:{event.get('event_ts') or event.get('ts', '')}",
                          sender_name=await self.display_name(user),
                          extra={"edit_of": ts, "thread": new.get("thread_ts")} if new.get("thread_ts")
                          else {"edit_of": ts})
        await self._deliver(msg)

    async def _on_delete(self, room: str, event: dict[str, Any]) -> None:
        old = event.get("previous_message") or {}
        ts = event.get("deleted_ts") or old.get("ts", "")
        if old.get("bot_id") or not self._bridged(room) or is_command(old.get("text") or ""):
            return
        user = old.get("user") or ""
        msg = ChatMessage(platform="slack", room=room, sender=f"slack:{user}", text="",
                          event_id=f"{ts}:delete", sender_name=await self.display_name(user) if user else None,
                          extra={"redacts": ts})
        await self._deliver(msg)

    def _bridged(self, room: str) -> bool:
        return "joint" in self.parts.directory.room(room).kinds

    async def _is_our_copy(self, room: str, ts: str) -> bool:
        """A message the bot posted itself (a relayed copy) is never relayed back."""
        def look() -> bool:
            with self.parts.db.session() as s:
                return origin_of(s, room, ts) is not None
        return await asyncio.to_thread(look)

    async def _deliver(self, msg: ChatMessage) -> None:
        if self.on_message is None:
            return
        try:
            await self.on_message(msg)
        except Exception:
            log.exception("slack: bridging %s failed", msg.event_id)

    async def _run_command(self, msg: ChatMessage) -> None:
        handled = await asyncio.to_thread(self.parts.engine.handle, msg)
        if handled.duplicate:
            log.info("slack: %s was handled before (a retry); ignored", msg.event_id)
        elif handled.rows and self.wake is not None:
            self.wake()

    async def display_name(self, user: str, fallback: str | None = None) -> str:
        """The user's Slack display name, cached in the database so each message needs no users.info call."""
        key = f"slack:user:{user}"
        now = self.parts.engine.clock()

        def cached() -> str | None:
            with self.parts.db.session() as s:
                raw = kv_get(s, key)
            if raw:
                data = json.loads(raw)
                if now.timestamp() - data.get("at", 0) < NAME_TTL.total_seconds():
                    return data["name"]
            return None

        name = await asyncio.to_thread(cached)
        if name:
            return name
        try:
            info = (await self.client.users_info(user=user)).get("user") or {}
        except Exception as e:  # a name is not worth failing a message for
            log.warning("slack: users.info %s failed: %s", user, e)
            return fallback or user
        profile = info.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or info.get("real_name") \
            or info.get("name") or fallback or user

        def store() -> None:
            with self.parts.db.session() as s:
                kv_set(s, key, json.dumps({"name": name, "at": now.timestamp()}), now)
        try:
            await asyncio.to_thread(store)
        except Exception:  # two requests caching the same name at once: either wins
            log.debug("slack: name cache write for %s lost a race", user)
        return name

    # --- outgoing ----------------------------------------------------------------------------------------

    async def send(self, room: str, kind: str, payload: dict[str, Any], *, target_id: str | None = None,
                   reply_to_remote: str | None = None) -> str | None:
        channel = room.split(":", 1)[1]
        try:
            if kind == "redact":
                return await self._delete(channel, target_id)
            if kind == "edit":
                if not target_id:
                    raise PermanentSendError("edit without the message to change")
                await self.client.chat_update(channel=channel, ts=target_id, **self._content(payload))
                return target_id
            if kind == "reply":
                return await self._reply(room, channel, payload)
            thread = _ts(payload.get("thread")) or _ts(reply_to_remote)
            if kind == "notice" and payload.get("conflict_update") is not None:
                alert_ts = await self._update_alert_for_notice(room, channel, payload)
                thread = thread or alert_ts
            return await self._post(room, kind, channel, payload, thread)
        except (TransientSendError, PermanentSendError):
            raise
        except SlackApiError as e:
            raise _classify(e) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise TransientSendError(f"slack unreachable: {e.__class__.__name__}: {e}") from None

    @staticmethod
    def _content(payload: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"text": (payload.get("text") or " ")[:MAX_TEXT]}
        if payload.get("blocks"):
            out["blocks"] = payload["blocks"][:50]
        return out

    async def _post(self, room: str, kind: str, channel: str, payload: dict[str, Any],
                    thread: str | None) -> str | None:
        # With an image the post is two calls; remember the first so a retry after a failed upload does not
        # post the message twice.
        key = "slack:posted:" + hashlib.sha256(
            json.dumps([room, kind, payload], sort_keys=True, default=str).encode()).hexdigest()[:40]
        ts = await self._kv(key) if payload.get("image") else None
        if ts is None:
            resp = await self._post_message(channel, thread=thread, **self._content(payload))
            ts = resp.get("ts")
            if payload.get("image"):
                await self._kv(key, ts)
        image = payload.get("image")
        if image:
            data = base64.b64decode(image["data_b64"])
            await self.client.files_upload_v2(channel=channel, file=data, filename=image.get("filename", "image.png"),
                                              title=image.get("title") or image.get("filename"),
                                              thread_ts=thread)
        return ts

    async def _post_message(self, channel: str, thread: str | None = None, **content: Any):
        kwargs = {"channel": channel, **content, "unfurl_links": False, "unfurl_media": False}
        if thread:
            kwargs["thread_ts"] = thread
        try:
            return await self.client.chat_postMessage(**kwargs)
        except SlackApiError as e:
            if e.response.get("error") != "not_in_channel":
                raise
            # Public channels can be joined without an invitation; then the post goes through.
            await self.client.conversations_join(channel=channel)
            return await self.client.chat_postMessage(**kwargs)

    async def _delete(self, channel: str, ts: str | None) -> str | None:
        if not ts:
            return None
        try:
            await self.client.chat_delete(channel=channel, ts=ts)
        except SlackApiError as e:
            if e.response.get("error") != "message_not_found":  # already gone is what we wanted
                raise
        return ts

    async def _reply(self, room: str, channel: str, payload: dict[str, Any]) -> str | None:
        reply_to = str(payload.get("reply_to") or "")
        ephemeral = bool(payload.get("ephemeral"))
        if reply_to.startswith(ACTION_PREFIX) and not ephemeral:
            # A button press did its work: the alert itself now shows the owner or the outcome.
            _, rest = reply_to.split(":", 1)
            ch, alert_ts, _trigger, action_id = rest.split(":", 3)
            await self._update_alert(room, ch, alert_ts, payload, resolved=action_id.startswith("resolve"))
            return None
        url = payload.get("response_url")
        if url and await self._respond(url, payload, ephemeral):
            return None
        user = str(payload.get("user") or "").removeprefix("slack:")
        thread = _ts(payload.get("thread"))
        if ephemeral and user:
            kwargs = {"channel": channel, "user": user, **self._content(payload)}
            if thread:
                kwargs["thread_ts"] = thread
            await self.client.chat_postEphemeral(**kwargs)
            return None
        resp = await self._post_message(channel, thread=thread, **self._content(payload))
        return resp.get("ts")

    async def _respond(self, url: str, payload: dict[str, Any], ephemeral: bool) -> bool:
        """Answer through the command's response_url; False when it expired (then the caller posts instead)."""
        body = {"response_type": "ephemeral" if ephemeral else "in_channel", "replace_original": False,
                **self._content(payload)}
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        async with self._session.post(url, json=body) as resp:
            text = await resp.text()
            if resp.status == 429 or resp.status >= 500:
                retry = resp.headers.get("Retry-After")
                raise TransientSendError(f"response_url answered {resp.status}",
                                         float(retry) if retry and retry.isdigit() else None)
            if resp.status >= 400:
                log.info("slack: response_url refused (%s %s); posting instead", resp.status, text[:100])
                return False
            return True

    # --- alerts changed in place -------------------------------------------------------------------------

    async def _update_alert(self, room: str, channel: str, alert_ts: str, change: dict[str, Any],
                            resolved: bool) -> None:
        def load() -> tuple[list[dict], str] | None:
            with self.parts.db.session() as s:
                row = origin_of(s, room, alert_ts)
                current = kv_get(s, f"slack:alert:{room}:{alert_ts}")
                if row is None:
                    return None
                p = row_payload(row)
                return (json.loads(current) if current else p.get("blocks") or []), p.get("text") or ""
        found = await asyncio.to_thread(load)
        if found is None:
            log.warning("slack: no stored alert %s in %s to update", alert_ts, room)
            return
        blocks, text = found
        new_blocks = _apply_change(blocks, change, resolved)
        await self.client.chat_update(channel=channel, ts=alert_ts, text=text[:MAX_TEXT], blocks=new_blocks)
        await self._kv(f"slack:alert:{room}:{alert_ts}", json.dumps(new_blocks))

    async def _update_alert_for_notice(self, room: str, channel: str, payload: dict[str, Any]) -> str | None:
        """A conflict acknowledged or resolved elsewhere: this room's alert stops offering stale buttons."""
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
            await self._update_alert(room, channel, alert_ts, payload, resolved="resolved" in first)
        return alert_ts

    async def _kv(self, key: str, value: str | None = None) -> str | None:
        def run() -> str | None:
            with self.parts.db.session() as s:
                if value is None:
                    return kv_get(s, key)
                kv_set(s, key, value, self.parts.engine.clock())
                return value
        return await asyncio.to_thread(run)


def _apply_change(blocks: list[dict[str, Any]], change: dict[str, Any], resolved: bool) -> list[dict[str, Any]]:
    """The alert's blocks with one conflict's part replaced by the rendered change (who owns it, how it ended).

    The alert template puts each conflict in a section starting with its id, followed by its buttons, whose
    value is the id. Acknowledged: the section shows the owner and only the Resolve buttons stay.
    Resolved: the section shows the outcome and the buttons go.
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
            kept = [e for e in block["elements"] if not str(e.get("action_id", "")).startswith("ack:")]
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


def _ts(value: Any) -> str | None:
    return value if isinstance(value, str) and _TS.match(value) else None


def _classify(e: SlackApiError) -> Exception:
    status = getattr(e.response, "status_code", 200)
    error = e.response.get("error") if hasattr(e.response, "get") else None
    if status == 429 or error in ("ratelimited", "rate_limited"):
        retry = (e.response.headers or {}).get("Retry-After") or (e.response.headers or {}).get("retry-after")
        try:
            retry_after = float(retry) if retry is not None else None
        except (TypeError, ValueError):
            retry_after = None
        return TransientSendError(f"slack rate limited ({error})", retry_after)
    if status >= 500 or error in _TRANSIENT_ERRORS:
        return TransientSendError(f"slack answered {status} {error}")
    return PermanentSendError(f"slack refused: {error or status}")


def _unescape(text: str) -> str:
    """Slack sends `&`, `<` and `>` escaped. Undo it before anything reads the text: `&gt; [LES] ...` (a quote)
    must be recognised as LES, and other platforms must see the characters, not the entities."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
