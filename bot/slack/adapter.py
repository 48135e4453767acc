"""The Slack adapter: slash commands, `!` messages, alert buttons and the joint-channel bridge over Bolt.

Nothing lost at the door: a request is acknowledged only once its message is stored (it went through the one
message path every platform uses, `Service.on_message`: the command done, or the relay copies queued), so a
replica killed before storing leaves Slack without an answer and Slack sends the request again, to whichever
replica. Slack gives us 3 seconds: work not done within `ACK_BUDGET` (a slow or locked database) is answered
with an error status, never acknowledged unstored, so Slack sends the request again (a slash command or a
button shows its user an error instead: Slack does not retry those, and the user tries again); meanwhile the
work goes on, and whichever finishes first stores it once.
One channel's requests are handed in one at a time, in the order they arrived, so two messages said a moment
apart are stored (and relayed) in that order. Answers go through the stored outbox (the delivery worker calls
`send`). When the database is unreachable, a message for the bridge is handed in again until it is stored,
and the sender of a command is told at once, through Slack alone, to try again.
Slack retries requests it thinks we missed and Bolt does not drop them: every message is claimed once by id
in the database (the engine's handled_event row for commands; the bridge's claim for relayed messages), so a
retry is never acted on twice — also while the first attempt is still at work on this or another replica.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from watchfloor.commands.grammar import is_command
from watchfloor.commands.message import ChatMessage
from watchfloor.config import SlackConfig
from watchfloor.storage.kv import kv_get, kv_set
from watchfloor.storage.outage import unreachable
from watchfloor.storage.outbox import origin_of
from watchfloor.templates import render

from watchfloor.bot.adapter import (OUTBOX_EVENT_TYPE, OnMessage, PermanentSendError, PlatformAuthError, TransientSendError,
                      outbox_mark)
from watchfloor.bot.paging import PICTURE
from watchfloor.bot.slack.alerts import ACK_REACTIONS, SlackAlerts, conflicts_of_alert
from watchfloor.bot.slack.errors import classify
from watchfloor.bot.slack.markup import MAX_TEXT, escape, readable
from watchfloor.bot.slack.names import SlackNames

log = logging.getLogger("watchfloor.slack")

SLASH_COMMANDS = ("op", "target", "conflicts", "brief", "zone", "watchfloor", "vessel", "arrivals", "watch", "handover")
ACK_BUDGET = 2.0  # seconds spent storing a request before answering "not yet, send it again" (Slack waits 3)
_SLASH = re.compile(r"^/(" + "|".join(SLASH_COMMANDS) + r")$")
_BUTTON = re.compile(r"^(ack|resolve):")
_TS = re.compile(r"^\d+\.\d+$")
ACTION_PREFIX = "slack-action:"
# New messages the bridge relays; every other subtype (joins, topic changes, bot posts) is not people talking.
_RELAYED_SUBTYPES = {None, "thread_broadcast", "file_share", "me_message"}
# How far back `find_sent` looks: the channel's latest messages (and a thread's), one page. The look-up comes
# seconds to minutes after the send it checks, so the post, if taken, is among them.
_LOOK_BACK = 200
# Calls that post: slack_sdk must not send these again on its own after the connection dropped mid-request
# (Slack may have taken the first); delivery looks for the post first (`find_sent`), then sends again.
_POSTING = ("chat.postMessage", "files.completeUploadExternal")


class SlackAdapter:
    platform = "slack"
    # A briefing's picture is an upload of its own after the text: delivery sends it as the row's last page
    # (bot.paging). Files carry no metadata: the upload's file name names the row and page (`_picture_name`),
    # which `find_pages` reads back from the channel's file-share messages.
    picture_apart = True

    def __init__(self, parts, config: SlackConfig, *, socket_ping_interval: float = 10.0):
        self.parts = parts
        self.config = config
        # Socket Mode: how often the socket is checked; a socket dropped without a close frame is replaced
        # within about that long.
        self.socket_ping_interval = socket_ping_interval
        kwargs: dict[str, Any] = {"token": config.bot_token.get_secret_value()}
        if config.api_url:
            kwargs["base_url"] = config.api_url if config.api_url.endswith("/") else config.api_url + "/"
        self.client = AsyncWebClient(**kwargs, retry_handlers=[_RetryUnlessPosted()])
        self.app = AsyncApp(signing_secret=config.signing_secret.get_secret_value(), client=self.client,
                            process_before_response=True)  # answered when the listener returns: stored
        self.names = SlackNames(parts, self.client)
        self.alerts = SlackAlerts(parts, self.client)
        self.on_message: OnMessage | None = None
        self.url: str | None = None  # where Slack posts events, commands and interactivity (HTTP mode)
        self._runner: aiohttp.web.AppRunner | None = None
        self._socket = None
        self._session: aiohttp.ClientSession | None = None
        # Requests acknowledged whose work has not finished: counted at the ack, so stopping (and a test) can
        # wait for work Bolt has not even started yet.
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = asyncio.Event()
        self.handled = 0  # requests whose work has finished
        self._intake: dict[str, asyncio.Lock] = {}  # per channel: requests handed in one at a time, in order
        self._me_ids: set[str] = set()  # the bot's user and bot ids, asked once (`_me`)
        self._register()

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self, on_message: OnMessage | None = None) -> None:
        self.on_message = on_message
        if self.config.app_token is not None:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(self.app, self.config.app_token.get_secret_value(),
                                                  ping_interval=self.socket_ping_interval)
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
        self._stopping.set()
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # Work already acknowledged to Slack finishes: Slack will not send it again.
        await self.idle(timeout=3)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def idle(self, timeout: float) -> bool:
        """Wait until every acknowledged request has been handled; False if that took longer than `timeout`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def healthy(self) -> bool:
        try:
            return bool((await self.client.auth_test()).get("ok"))
        except Exception:
            return False

    # --- incoming ----------------------------------------------------------------------------------------

    def _register(self) -> None:
        def stored_then_acked(work):
            async def listener(ack, body):
                # Started before any await: the channel's lock is queued for in the order requests arrived.
                task = asyncio.ensure_future(self._in_order(work, body))
                try:
                    await asyncio.wait_for(asyncio.shield(task), ACK_BUDGET)
                except asyncio.TimeoutError:
                    # Not stored yet (a slow or locked database): not acknowledged, so Slack sends it again; the
                    # work goes on, and the message's claim keeps the two from acting twice.
                    log.warning("slack: %s not stored within %.0f s; answered 503 so that Slack sends it again",
                                _request_name(body), ACK_BUDGET)
                    return BoltResponse(status=503, body="not stored yet; send it again")
                except Exception:
                    pass  # logged by _in_order; acknowledged all the same (a retry would fail alike)
                await ack()
            return listener

        self.app.command(_SLASH)(stored_then_acked(self._on_slash))
        self.app.action(_BUTTON)(stored_then_acked(self._on_button))
        self.app.event("message")(stored_then_acked(self._on_message_event))
        self.app.event("reaction_added")(stored_then_acked(self._on_reaction))

        @self.app.error
        async def _errors(error, body):
            # A failure must never reach the user as a stack trace; the log keeps it.
            log.exception("slack: request failed", exc_info=error)

    async def _in_order(self, work, body: dict[str, Any]) -> None:
        self._pending += 1
        self._idle.clear()
        lock = self._intake.setdefault(_channel_of(body), asyncio.Lock())
        try:
            async with lock:
                await work(body)
        except Exception:
            log.exception("slack: handling a request failed")
            raise
        finally:
            self.handled += 1
            self._pending -= 1
            if self._pending <= 0:
                self._pending = 0
                self._idle.set()

    async def _on_slash(self, body: dict[str, Any]) -> None:
        name = body.get("command", "").lstrip("/")
        text = f"/{name} {body.get('text', '')}".strip()
        user = body.get("user_id", "")
        msg = ChatMessage(
            platform="slack", room=f"slack:{body.get('channel_id', '')}", sender=f"slack:{user}", text=text,
            # Slack sends a fresh trigger_id per invocation and the same one on a retry.
            event_id=f"cmd:{body.get('trigger_id') or body.get('response_url', '')}",
            sender_name=await self.names.user(user, body.get("user_name")),
            extra={"response_url": body.get("response_url")} if body.get("response_url") else {},
        )
        await self._command(msg)

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
            sender_name=await self.names.user(user, (body.get("user") or {}).get("name")),
            extra=extra,
        )
        await self._command(msg)

    async def _on_reaction(self, body: dict[str, Any]) -> None:
        """✅ or 👍 on an alert, from a phone: the sender acknowledges its conflicts, as if they had pressed its
        Acknowledge buttons (the alert is changed in place; a refusal goes to them alone)."""
        event = body.get("event") or {}
        item = event.get("item") or {}
        reaction = str(event.get("reaction", "")).split("::", 1)[0]
        user, channel, ts = event.get("user", ""), item.get("channel", ""), item.get("ts", "")
        if reaction not in ACK_REACTIONS or item.get("type") != "message" or not (user and channel and ts):
            return
        room = f"slack:{channel}"
        for cf_id in await conflicts_of_alert(self.parts, room, ts):
            action_id = f"ack:CF-{cf_id}"
            await self._command(ChatMessage(
                platform="slack", room=room, sender=f"slack:{user}", text=f"/conflicts ack CF-{cf_id}",
                # One per person and alert, whichever emoji and however often Slack retries the event.
                event_id=f"{ACTION_PREFIX}{channel}:{ts}:reaction-{user}:{action_id}",
                sender_name=await self.names.user(user)))

    async def _on_message_event(self, body: dict[str, Any]) -> None:
        event = body.get("event") or {}
        channel = event.get("channel", "")
        room = f"slack:{channel}"
        subtype = event.get("subtype")
        if subtype == "message_changed":
            handle = self._on_edit
        elif subtype == "message_deleted":
            handle = self._on_delete
        elif subtype in _RELAYED_SUBTYPES and not event.get("bot_id") and event.get("user"):
            handle = self._on_new
        else:
            return
        await self._until_stored(handle, room, event)

    async def _until_stored(self, handle, room: str, event: dict[str, Any]) -> None:
        """What the database cannot take now is handed in again until it can (claims make that safe): past the
        ack budget Slack also sends the event again, and whichever comes first stores it. A command in it is
        not: its sender is told."""
        delay = 0.5
        while True:
            try:
                return await handle(room, event)
            except Exception as e:
                if not unreachable(e):
                    raise
            log.warning("slack: the database is unreachable; %s in %s is handed in again in %.1fs",
                        event.get("ts"), room, delay)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
                log.error("slack: stopped before the database came back; %s in %s was not handled",
                          event.get("ts"), room)
                return
            except asyncio.TimeoutError:
                delay = min(delay * 2, 30.0)

    async def _on_new(self, room: str, event: dict[str, Any]) -> None:
        text, ts, user = await self._readable(event.get("text") or ""), event.get("ts", ""), event["user"]
        thread = event.get("thread_ts")
        if is_command(text) and text.lstrip().startswith("!"):
            extra = {"thread": thread} if thread else {}
            msg = ChatMessage(platform="slack", room=room, sender=f"slack:{user}", text=text.strip(),
                              event_id=f"msg:{room}:{ts}", sender_name=await self.names.user(user), extra=extra)
            await self._command(msg)
            return
        if not self._bridged(room):
            return  # one of the bot's own copies coming back is left out by the bridge (same room, same id)
        msg = ChatMessage(platform="slack", room=room, sender=f"slack:{user}", text=text, event_id=ts,
                          sender_name=await self.names.user(user),
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
        msg = ChatMessage(platform="slack", room=room, sender=f"slack:{user}",
                          text=await self._readable(new.get("text") or ""),
                          event_id=f"{ts}:edit:{event.get('event_ts') or event.get('ts', '')}",
                          sender_name=await self.names.user(user),
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
                          event_id=f"{ts}:delete", sender_name=await self.names.user(user) if user else None,
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

    async def _readable(self, text: str) -> str:
        return await readable(text, self.names.user_name, self.names.channel)

    async def _deliver(self, msg: ChatMessage) -> None:
        if self.on_message is not None:
            await self.on_message(msg)

    async def _command(self, msg: ChatMessage) -> None:
        if self.on_message is None:
            log.warning("slack: no message handler; %s not handled", msg.event_id)
            return
        try:
            await self.on_message(msg)
        except Exception as e:
            if not unreachable(e):
                raise
            # Slack has our acknowledgement and will not offer the command again.
            log.warning("slack: %s not stored, the database is unreachable; the sender is told", msg.event_id)
            await self._try_again(msg)

    async def _try_again(self, msg: ChatMessage) -> None:
        """Tell the sender alone that the command was not stored, through Slack only (no outbox row: that needs
        the database): the command's response_url, else an ephemeral message."""
        payload = {**render("not_stored.j2").to_dict(), "ephemeral": True, "user": msg.sender,
                   **{k: v for k, v in msg.extra.items() if k in ("response_url", "thread")}}
        try:
            await self._reply(msg.room, msg.room.split(":", 1)[1], payload)
        except Exception:
            log.exception("slack: could not tell the sender of %s to try again", msg.event_id)

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
                if payload.get("conflicts") is not None:
                    # An alert shown as it stands now: a later change (bot/slack/alerts.py) starts from it.
                    await self._kv(f"slack:alert:{room}:{target_id}", json.dumps(payload.get("blocks") or []))
                return target_id
            thread = _ts(payload.get("thread")) or _ts(reply_to_remote)
            if payload.get(PICTURE) and payload.get("image"):
                return await self._upload(channel, payload["image"], thread, outbox_mark(payload))
            if kind == "reply":
                return await self._reply(room, channel, payload)
            if kind == "notice" and payload.get("conflict_update") is not None:
                alert_ts = await self.alerts.update_for_notice(room, channel, payload)
                thread = thread or alert_ts
            return await self._post(room, kind, channel, payload, thread)
        except (TransientSendError, PermanentSendError, PlatformAuthError):
            raise
        except SlackApiError as e:
            raise _classified(e) from None
        except aiohttp.ClientConnectorError as e:  # never connected: nothing was taken
            raise TransientSendError(f"slack unreachable: {e.__class__.__name__}: {e}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise TransientSendError(f"slack unreachable: {e.__class__.__name__}: {e}", ambiguous=True) from None

    async def find_sent(self, room: str, outbox_ids, *, threads=()) -> dict[int, str]:
        """The ts of posts in the channel (and in `threads`) whose metadata names one of `outbox_ids`, among
        the latest `_LOOK_BACK` messages: `conversations.history` leaves thread replies out, hence `threads`."""
        found = await self._marked_posts(room, set(outbox_ids), threads, first_only=True)
        return {row: ts for (row, page), ts in found.items() if page == 1}

    async def find_pages(self, room: str, outbox_id: int, *, threads=()) -> dict[int, str]:
        """The posted pages of a long message: page number (from 1) -> ts."""
        found = await self._marked_posts(room, {outbox_id}, threads, first_only=False)
        return {page: ts for (_row, page), ts in found.items()}

    async def _marked_posts(self, room: str, wanted: set[int], threads, first_only: bool) -> dict[tuple[int, int], str]:
        channel = room.split(":", 1)[1]
        found: dict[tuple[int, int], str] = {}
        try:
            me = await self._me()
            resp = await self.client.conversations_history(channel=channel, limit=_LOOK_BACK,
                                                          include_all_metadata=True)
            _collect(resp.get("messages") or [], me, wanted, found)
            for thread in dict.fromkeys(t for t in threads if _ts(t)):
                if first_only and all((row, 1) in found for row in wanted):
                    break
                try:
                    resp = await self.client.conversations_replies(channel=channel, ts=thread, limit=_LOOK_BACK,
                                                                   include_all_metadata=True)
                except SlackApiError as e:
                    if e.response.get("error") in ("thread_not_found", "message_not_found"):
                        continue  # the message answered is gone: nothing was posted under it
                    raise
                _collect(resp.get("messages") or [], me, wanted, found)
        except SlackApiError as e:
            raise _classified(e) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise TransientSendError(f"slack unreachable: {e.__class__.__name__}: {e}") from None
        return found

    async def _me(self) -> set[str]:
        """The bot's user and bot ids: only its own posts count (another install may post the same marks)."""
        if not self._me_ids:
            resp = await self.client.auth_test()
            self._me_ids = {i for i in (resp.get("user_id"), resp.get("bot_id")) if i}
        return self._me_ids

    @staticmethod
    def _content(payload: dict[str, Any]) -> dict[str, Any]:
        # The plain rendering, so any `<` in it is words, not a Slack mention or link.
        out: dict[str, Any] = {"text": escape((payload.get("text") or " ")[:MAX_TEXT])}
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
            resp = await self._post_message(channel, thread=thread, **self._content(payload), **_marked(payload))
            ts = resp.get("ts")
            if payload.get("image"):
                await self._kv(key, ts)
        image = payload.get("image")
        if image:
            await self._upload(channel, image, thread)
        return ts

    async def _upload(self, channel: str, image: dict[str, Any], thread: str | None,
                      mark: dict[str, int] | None = None) -> str | None:
        """Share the picture in the channel (or thread); returns the file's id. `mark`: the outbox row and page the
        picture is, put in the file's name (its title, what people see, keeps the plain name)."""
        data = base64.b64decode(image["data_b64"])
        name = image.get("filename") or "image.png"
        resp = await self.client.files_upload_v2(channel=channel, file=data, filename=_picture_name(name, mark),
                                                 title=image.get("title") or name, thread_ts=thread)
        return ((resp.get("files") or [{}])[0] or {}).get("id")

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
            await self.alerts.update(room, ch, alert_ts, payload, resolved=action_id.startswith("resolve"))
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
        resp = await self._post_message(channel, thread=thread, **self._content(payload), **_marked(payload))
        return resp.get("ts")

    async def _respond(self, url: str, payload: dict[str, Any], ephemeral: bool) -> bool:
        """Answer through the command's response_url; False when it expired (then the caller posts instead)."""
        body = {"response_type": "ephemeral" if ephemeral else "in_channel", "replace_original": False,
                **self._content(payload), **({} if ephemeral else _marked(payload))}
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        async with self._session.post(url, json=body) as resp:
            text = await resp.text()
            if resp.status == 429 or resp.status >= 500:
                retry = resp.headers.get("Retry-After")
                raise TransientSendError(f"response_url answered {resp.status}",
                                         float(retry) if retry and retry.isdigit() else None,
                                         ambiguous=resp.status >= 500)
            if resp.status >= 400:
                log.info("slack: response_url refused (%s %s); posting instead", resp.status, text[:100])
                return False
            return True

    async def _kv(self, key: str, value: str | None = None) -> str | None:
        def run() -> str | None:
            with self.parts.db.session() as s:
                if value is None:
                    return kv_get(s, key)
                kv_set(s, key, value, self.parts.engine.clock())
                return value
        return await asyncio.to_thread(run)


def _ts(value: Any) -> str | None:
    return value if isinstance(value, str) and _TS.match(value) else None


def _marked(payload: dict[str, Any]) -> dict[str, Any]:
    """Message metadata naming the post's outbox row (and page), for `find_sent`."""
    mark = outbox_mark(payload)
    return {"metadata": {"event_type": OUTBOX_EVENT_TYPE, "event_payload": mark}} if mark else {}


def _picture_name(filename: str, mark: dict[str, int] | None) -> str:
    """The upload's file name naming its outbox row and page: `lalb-timeline.png` -> `lalb-timeline.wf12-2.png`
    (a file carries no metadata; its name is kept in the file-share message `find_pages` reads)."""
    if not mark:
        return filename
    stem, dot, ext = filename.rpartition(".")
    stem, ext = (stem, dot + ext) if dot and stem else (filename, "")
    return f"{stem}.wf{mark['outbox_id']}-{mark.get('page') or 1}{ext}"


_PICTURE_MARK = re.compile(r"\.wf(\d+)-(\d+)(?:\.[A-Za-z0-9]+)?$")


def _collect(messages: list[dict[str, Any]], me: set[str], wanted: set[int],
             found: dict[tuple[int, int], str]) -> None:
    """The bot's own posts naming one of the `wanted` rows, by (row, page): messages by their metadata (-> ts),
    shared pictures by their file name (-> file id)."""
    for m in messages:
        if not ({m.get("user"), m.get("bot_id")} & me):
            continue
        meta = m.get("metadata") or {}
        if meta.get("event_type") == OUTBOX_EVENT_TYPE:
            names = meta.get("event_payload") or {}
            try:
                row, page = int(names.get("outbox_id")), int(names.get("page") or 1)
            except (TypeError, ValueError):
                continue
            if row in wanted and m.get("ts"):
                found.setdefault((row, page), m["ts"])
            continue
        for f in m.get("files") or []:
            named = _PICTURE_MARK.search(str((f or {}).get("name") or ""))
            if named and int(named[1]) in wanted and f.get("id"):
                found.setdefault((int(named[1]), int(named[2])), f["id"])


def _classified(e: SlackApiError) -> Exception:
    """`classify`, with Slack's own 5xx marked ambiguous: the post may have been taken before it failed."""
    error = classify(e)
    if isinstance(error, TransientSendError) and (getattr(e.response, "status_code", 200) or 200) >= 500:
        error.ambiguous = True
    return error


class _RetryUnlessPosted(AsyncConnectionErrorRetryHandler):
    """slack_sdk's one retry on a connection error, except for a post whose connection dropped after it was
    sent: Slack may have taken it, and posting it again blind would show it twice. A connection never made is
    retried for every call, as before."""

    async def _can_retry_async(self, *, state, request, response=None, error=None) -> bool:
        if isinstance(error, aiohttp.ClientConnectorError):
            return True
        if request is not None and str(request.url).rstrip("/").endswith(_POSTING):
            return False
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)


def _request_name(body: dict[str, Any]) -> str:
    """A request in a log line, by what names it (never its text)."""
    event = body.get("event") or {}
    if body.get("event_id"):
        return f"event {body['event_id']} ({event.get('type', '?')} in {_channel_of(body) or '?'})"
    if body.get("command"):
        return f"{body['command']} in {_channel_of(body) or '?'}"
    return f"{body.get('type', 'request')} in {_channel_of(body) or '?'}"


def _channel_of(body: dict[str, Any]) -> str:
    """The channel a request is about (a command's, a button's message's, an event's or its item's)."""
    event = body.get("event") or {}
    return (body.get("channel_id") or (body.get("channel") or {}).get("id")
            or (body.get("container") or {}).get("channel_id") or event.get("channel")
            or (event.get("item") or {}).get("channel") or "")
