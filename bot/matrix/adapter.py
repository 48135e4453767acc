"""The Matrix adapter (matrix-nio): log in, join the configured rooms, turn timeline events into ChatMessages,
and send what the outbox holds.

Our sync token lives in our database and is saved only after a batch was handled, so a restarted bot
catches up on what was said while it was down and history before its first start is never answered. A message
that cannot be handled because the database is unreachable holds the batch (and its token) until the database
answers again: nothing is lost, and the handled-event claims keep a batch given again from being answered twice.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
from nio import (ErrorResponse, JoinResponse, LocalProtocolError, LoginResponse, MessageDirection,
                 RoomMessagesResponse, RoomRedactResponse, RoomSendResponse, SyncResponse, UploadResponse,
                 WhoamiResponse)

from watchfloor.config import MatrixConfig
from watchfloor.storage.kv import kv_get, kv_set
from watchfloor.storage.outage import unreachable

from watchfloor.bot.adapter import (OUTBOX_KEY, OnMessage, PermanentSendError, PlatformAuthError, TransientSendError,
                      outbox_mark)
from watchfloor.bot.matrix.crypto import ENCRYPTED, Crypto, make_client
from watchfloor.bot.matrix.direct import DirectRooms
from watchfloor.bot.matrix.events import chat_message, message_content
from watchfloor.bot.paging import PICTURE

log = logging.getLogger("watchfloor.matrix")

_AUTH = {"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"}
_PERMANENT = {"M_NOT_FOUND", "M_BAD_JSON", "M_NOT_JSON", "M_TOO_LARGE", "M_INVALID_PARAM", "M_UNKNOWN_ROOM"}
_GAP_FILL_MAX = 2000  # events fetched back per room after a long outage
_BUG_TRIES = 3  # a message failing for another reason than the database is tried this often, then left
_LOOK_BACK = 100  # the bot's own latest events in a room that `find_sent` looks through
_PAGE_KEY = OUTBOX_KEY + "_page"  # beside OUTBOX_KEY on the later pages of a long message


class MatrixStartError(RuntimeError):
    """The homeserver refused us for good (bad password or token): retrying will not help."""


class MatrixAdapter:
    platform = "matrix"
    # A briefing's picture is an m.image event of its own after the text: delivery sends it as the row's last page
    # (bot.paging), marked like any page, so a replica taking over finds it or posts it, once.
    picture_apart = True

    def __init__(self, parts, config: MatrixConfig, *, sync_timeout_ms: int = 30_000, timeline_limit: int = 100,
                 startup_wait: float = 15.0, retry_cap: float = 10.0, unreadable_after: float = 60.0):
        self.parts = parts
        self.config = config
        self.sync_timeout_ms = sync_timeout_ms
        self.timeline_limit = timeline_limit
        self.startup_wait = startup_wait
        self.retry_cap = retry_cap
        self.client = make_client(config)
        self.crypto = Crypto(self.client, parts, config, unreadable_after)
        self.direct = DirectRooms(self.client, parts)  # answers to a reaction go to its sender alone
        if config.les_requires_encryption:
            parts.directory.bar_les(self.crypto.les_barred)
        self.ready = asyncio.Event()
        self._tried = asyncio.Event()  # a first attempt failed: the homeserver is not there (yet)
        self.connected = False
        self._token_key = f"matrix.sync_token:{config.user_id}"
        self._token: str | None = None
        self._on_message: OnMessage | None = None
        self._task: asyncio.Task | None = None
        self._sync_call: asyncio.Future | None = None
        self._stopping = False
        self._fatal: str | None = None
        self._logged_in = False
        self._caught_up = False
        self._names: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._sending = 0
        self._syncs = 0
        # Several replicas (PostgreSQL): only the one holding the `matrix` duty syncs; bot.duties calls
        # take_duty/drop_duty, and start() only remembers where messages go.
        self.wait_for_duty = False
        self.holds_duty: Callable[[], bool] = lambda: True

    # ------------------------------------------------------------------ lifecycle

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        if self.wait_for_duty:
            return
        log.info("matrix: connecting to %s as %s", self.config.homeserver, self.config.user_id)
        self._task = asyncio.create_task(self._run(), name="matrix-sync")
        # Ready, refused (raised below), or not there: a homeserver that is down or silent must not hold the rest
        # of the bot back; the sync loop goes on trying in the background.
        waits = [asyncio.ensure_future(self.ready.wait()), asyncio.ensure_future(self._tried.wait())]
        try:
            await asyncio.wait(waits, timeout=self.startup_wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if not self.ready.is_set():
            log.warning("matrix: %s not reachable yet; still trying in the background", self.config.homeserver)
        if self._fatal:
            await self.stop()
            raise MatrixStartError(self._fatal)

    async def stop(self) -> None:
        """Stop syncing. A batch being handled is finished (and its token saved) before we return."""
        await self._stop_syncing()
        # A send cut off half way may have been taken without us learning its id: let it finish.
        deadline = asyncio.get_running_loop().time() + 0.8
        while self._sending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await self.client.close()

    async def take_duty(self) -> None:
        """This replica holds the `matrix` duty now: log in if not yet (its own device), and sync on from the
        token the previous holder stored in the database (reloaded: the one in memory may be old)."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._token = None
        self._caught_up = False
        self.crypto.pending = None  # the previous holder's kept messages, from the database
        self._task = asyncio.create_task(self._run(), name="matrix-sync")

    async def drop_duty(self) -> None:
        """Another replica syncs now: stop syncing (the batch in hand is finished or left for it)."""
        await self._stop_syncing()
        self._task = None
        self.connected = False

    async def _stop_syncing(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._sync_call is not None:
            self._sync_call.cancel()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 3)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:
                log.exception("matrix: sync loop ended with an error")

    async def healthy(self) -> bool:
        if not self._logged_in:
            return False
        try:
            return isinstance(await asyncio.wait_for(self.client.whoami(), 5), WhoamiResponse)
        except Exception:
            return False

    # ------------------------------------------------------------------ receiving

    async def _run(self) -> None:
        delay = 1.0
        while not self._stopping:
            try:
                if not self._logged_in:
                    await self._login()
                if self._token is None:
                    self._token = await asyncio.to_thread(self._load_token)
                if self.crypto.pending is None:
                    await asyncio.to_thread(self.crypto.load)
                if self._token is None:
                    await self._first_sync()
                else:
                    await self._sync_once()
                await self.crypto.upkeep()
                self._syncs += 1
                if self._syncs == 2:  # the rooms joined after the first sync are known now
                    for warning in self.crypto.les_warnings(self.parts.settings):
                        log.warning("matrix: %s", warning)
                if not self.ready.is_set():
                    await self._join_configured()
                    self.ready.set()
                self.connected = True
                delay = 1.0
            except MatrixStartError as e:
                self._fatal = str(e)
                log.error("matrix: %s", e)
                self.ready.set()
                return
            except asyncio.CancelledError:
                if self._stopping:
                    return
                raise
            except Exception as e:
                self.connected = False
                self._tried.set()
                wait = getattr(e, "retry_after", None) or delay
                log.warning("matrix: sync failed (%s); retrying in %.1fs", _one_line(e), wait)
                await self._sleep(wait)
                delay = min(delay * 2, self.retry_cap)

    async def _sleep(self, seconds: float) -> None:
        if self._stopping:
            return
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _login(self) -> None:
        c = self.config
        if c.access_token is not None:
            self.client.access_token = c.access_token.get_secret_value()
            resp = await self.client.whoami()
            if isinstance(resp, ErrorResponse):
                if resp.status_code in ("M_UNKNOWN_TOKEN", "M_FORBIDDEN"):
                    raise MatrixStartError(f"the homeserver rejected the access token ({resp.status_code})")
                raise _Retry(str(resp), resp.retry_after_ms)
            # The token belongs to a device: its keys are the ones kept in the store under that id.
            self.client.restore_login(c.user_id, resp.device_id or c.device_id, self.client.access_token)
        else:
            resp = await self.client.login(c.password.get_secret_value(), device_name="watchfloor")
            if not isinstance(resp, LoginResponse):
                if resp.status_code in ("M_FORBIDDEN", "M_USER_DEACTIVATED", "M_INVALID_USERNAME"):
                    raise MatrixStartError(f"login as {c.user_id} refused ({resp.status_code})")
                raise _Retry(str(resp), resp.retry_after_ms)
        # This replica's device is one of the bot's own from now on: the other replicas trust it (and only such).
        # Not written (the database away): logged in again at the next try, and written then.
        await asyncio.to_thread(self.crypto.register)
        self._logged_in = True
        log.info("matrix: logged in as %s (device %s%s)", c.user_id, self.client.device_id,
                 ", encryption on" if self.crypto.on else "")
        await self.crypto.upkeep()

    def _filter(self, limit: int) -> dict[str, Any]:
        return {"room": {"timeline": {"limit": limit}}, "presence": {"types": []}}

    async def _first_sync(self) -> None:
        """Never started before: take the current position and answer nothing said before it."""
        resp = await self._sync(since=None, limit=1, full_state=True)
        await self._accept_invites(resp)
        await self._save_token(resp.next_batch)
        self._caught_up = True

    async def _sync_once(self) -> None:
        since = self._token
        # After a restart nio knows no room members yet: full state once gives us display names.
        resp = await self._sync(since=since, limit=self.timeline_limit, full_state=not self._caught_up)
        self._caught_up = True
        await self._accept_invites(resp)
        for room_id, room in resp.rooms.join.items():
            events = await self._timeline(room_id, room.timeline, since)
            for source in _after_own_join(events, self.client.user_id):
                if source.get("sender") == self.client.user_id:
                    continue
                if source.get("type") == ENCRYPTED:  # still encrypted: nio had no key for it
                    await self.crypto.keep(room_id, source)
                    continue
                msg = chat_message(room_id, source, self._name(room_id, source.get("sender", "")),
                                   lambda user, r=room_id: self._name(r, user))
                if msg is None:
                    continue
                if source.get("sender") and msg.sender_name is None:
                    msg = await self._with_profile_name(msg, source["sender"])
                await self._handle(msg)
        await self._unreadable_round()
        # The kept unreadable messages are stored before the token moves past them.
        await self._until_db_answers(lambda: asyncio.to_thread(self.crypto.save), "keeping unreadable messages")
        if not self.holds_duty():
            return  # thawed after losing the duty: the holder's token is newer than ours; leave it be
        await self._until_db_answers(lambda: self._save_token(resp.next_batch), "storing the sync token")

    async def _unreadable_round(self) -> None:
        """Kept messages whose keys came are handled now; the senders of those still unreadable after a while
        are told once."""
        for room_id, source in self.crypto.readable():
            msg = chat_message(room_id, source, self._name(room_id, source.get("sender", "")),
                               lambda user, r=room_id: self._name(r, user))
            if msg is not None:
                await self._handle(msg)
            self.crypto.done(source["event_id"])
        for event_id, entry in self.crypto.overdue():
            sender = entry["source"].get("sender", "")
            name = self._name(entry["room"], sender)
            await self._until_db_answers(lambda e=event_id, en=entry, n=name: asyncio.to_thread(
                self.crypto.tell, e, en, n), f"telling {sender} about {event_id}")

    async def _handle(self, msg) -> None:
        """Hand one message on. The database being unreachable is waited out, however long: the token is not
        stored past a message we could not handle, so it is neither lost nor (claims) handled twice. Anything
        else is a bug — the engine has answered a command with "something went wrong" already — tried a couple
        more times in case it was passing, then left behind rather than stall the room."""
        if msg.extra.get("reaction_to"):
            self.direct.reaction(msg.event_id)
        for attempt in range(1, _BUG_TRIES + 1):
            try:
                await self._until_db_answers(lambda: self._on_message(msg), f"message {msg.event_id}")
                return
            except _Stopping:
                raise
            except Exception:
                log.exception("matrix: handling %s failed (try %d of %d)", msg.event_id, attempt, _BUG_TRIES)
                if attempt < _BUG_TRIES:
                    await self._sleep(0.5 * attempt)

    async def _until_db_answers(self, step, what: str):
        """Run `step()` again while it fails only because the database is unreachable, backing off (capped at
        retry_cap); other errors are raised."""
        delay = 0.25
        while True:
            try:
                return await step()
            except Exception as e:
                if not unreachable(e):
                    raise
                if self._stopping:
                    raise _Stopping(f"stopping with the database unreachable; {what} is left for next start")
                log.warning("matrix: database unreachable (%s); %s waits, again in %.1fs", _one_line(e), what,
                            delay)
            await self._sleep(delay)
            delay = min(delay * 2, self.retry_cap)

    async def _sync(self, since: str | None, limit: int, full_state: bool) -> SyncResponse:
        timeout = 0 if (full_state or since is None) else self.sync_timeout_ms
        self._sync_call = asyncio.ensure_future(self.client.sync(
            timeout=timeout, since=since, sync_filter=self._filter(limit), full_state=full_state))
        try:
            resp = await self._sync_call
        finally:
            self._sync_call = None
        if not isinstance(resp, SyncResponse):
            if getattr(resp, "status_code", None) in ("M_UNKNOWN_TOKEN",):
                self._logged_in = False
            raise _Retry(str(resp), getattr(resp, "retry_after_ms", None))
        return resp

    async def _timeline(self, room_id: str, timeline, since: str | None) -> list[dict[str, Any]]:
        """The room's events since our token; a limited timeline (long outage, a flood) is filled backwards."""
        events = [e.source for e in timeline.events]
        if not (timeline.limited and since and timeline.prev_batch):
            return events
        earlier: list[dict[str, Any]] = []
        start = timeline.prev_batch
        while len(earlier) < _GAP_FILL_MAX:
            resp = await self.client.room_messages(room_id, start=start, end=since,
                                                   direction=MessageDirection.back, limit=100)
            if not isinstance(resp, RoomMessagesResponse):
                raise _Retry(f"could not fetch missed messages: {resp}", getattr(resp, "retry_after_ms", None))
            if not resp.chunk:
                break
            earlier.extend(e.source for e in resp.chunk)
            if not resp.end or resp.end == start:
                break
            start = resp.end
        log.info("matrix: fetched %d missed events in %s", len(earlier), room_id)
        return list(reversed(earlier)) + events

    def _name(self, room_id: str, user_id: str) -> str | None:
        room = self.client.rooms.get(room_id)
        name = room.user_name(user_id) if room else None
        return name or self._names.get(user_id)

    async def _with_profile_name(self, msg, user_id: str):
        from dataclasses import replace

        try:
            resp = await self.client.get_displayname(user_id)
            name = getattr(resp, "displayname", None)
        except Exception:
            name = None
        self._names[user_id] = name or user_id.lstrip("@").split(":", 1)[0]
        return replace(msg, sender_name=self._names[user_id])

    async def _accept_invites(self, resp: SyncResponse) -> None:
        # Unconfigured rooms too: there the bot answers only `!help` and `!zone` (which tells an administrator
        # the room id to bind), and it relays nothing.
        for room_id in resp.rooms.invite:
            await self._join(room_id)

    async def _join_configured(self) -> None:
        joined = set(self.client.rooms)
        for room_id in self._configured_rooms():
            if room_id not in joined:
                await self._join(room_id)

    async def _join(self, room_id: str) -> bool:
        resp = await self.client.join(room_id)
        if isinstance(resp, JoinResponse):
            log.info("matrix: joined %s", room_id)
            return True
        log.warning("matrix: cannot join %s yet (%s); an invite will let us in", room_id, _one_line(resp))
        return False

    def _configured_rooms(self) -> list[str]:
        s = self.parts.settings
        ids = [r for z in s.zone for r in (*z.joint_rooms, *z.watch_rooms)]
        ids += [r for d in s.district for r in d.watch_rooms] + [r.id for r in s.room]
        return list(dict.fromkeys(r.split(":", 1)[1] for r in ids if r.startswith("matrix:")))

    def _load_token(self) -> str | None:
        with self.parts.db.session() as s:
            return kv_get(s, self._token_key)

    async def _save_token(self, token: str) -> None:
        def save():
            with self.parts.db.session() as s:
                kv_set(s, self._token_key, token, self.parts.engine.clock())

        await asyncio.to_thread(save)
        self._token = token

    # ------------------------------------------------------------------ sending

    async def send(self, room: str, kind: str, payload: dict[str, Any], *, target_id: str | None = None,
                   reply_to_remote: str | None = None) -> str | None:
        self._sending += 1
        try:
            return await self._send(room, kind, payload, target_id, reply_to_remote)
        finally:
            self._sending -= 1

    async def _send(self, room: str, kind: str, payload: dict[str, Any], target_id: str | None,
                    reply_to_remote: str | None) -> str | None:
        room_id = room.split(":", 1)[1]
        txn = _txn_id(room, kind, payload)
        try:
            private = self.direct.private_to(kind, payload, reply_to_remote)
            if private is not None:
                # The answer to a reaction (a refusal) is for its sender alone: their direct room with the bot,
                # or, when that cannot be opened, the room as before.
                direct = await self.direct.room_for(private)
                if direct is not None:
                    room_id, kind, reply_to_remote = direct, "notice", None
            if self.crypto.on and room_id not in self.client.rooms:
                # nio must know a room to know whether to encrypt: join (or wait for the sync to show it).
                if not await self._join(room_id):
                    raise PermanentSendError(f"not allowed to post in {room_id}: cannot join")
                raise TransientSendError(f"{room_id} not synced yet; sending again", 0.5)
            await self.crypto.before_send(room_id)
            if payload.get(PICTURE) and payload.get("image"):
                # The picture page of a row (bot.paging): the m.image alone, marked with the row and page.
                return await self._send_image(room_id, payload["image"], f"{txn}-image", _marked(payload))
            if kind == "redact":
                resp = await self.client.room_redact(room_id, target_id, reason=payload.get("reason"), tx_id=txn)
            else:
                content = message_content(kind, payload, target_id=target_id, reply_to_remote=reply_to_remote)
                content.update(_marked(payload))
                resp = await self.client.room_send(room_id, "m.room.message", content, tx_id=txn,
                                                   ignore_unverified_devices=True)
        except LocalProtocolError as e:
            raise TransientSendError(f"not logged in yet: {e}") from None
        except aiohttp.ClientConnectorError as e:  # never connected: nothing was taken
            raise TransientSendError(f"homeserver unreachable: {_one_line(e)}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            # The homeserver may have taken it. The same device sending again is deduplicated by the transaction
            # id; another device (a replica that took over) is not, so delivery looks for the post first.
            raise TransientSendError(f"homeserver unreachable: {_one_line(e)}", ambiguous=True) from None
        if isinstance(resp, (RoomSendResponse, RoomRedactResponse)):
            if payload.get("image") and kind != "redact":
                await self._send_image(room_id, payload["image"], f"{txn}-image")
            return resp.event_id
        await self._raise_for(resp, room_id)

    async def find_sent(self, room: str, outbox_ids, *, threads=()) -> dict[int, str]:
        """The event ids of the bot's own posts among its latest `_LOOK_BACK` events in the room whose content
        names one of `outbox_ids` (threads are in the room's timeline already). In an encrypted room only what
        this client can decrypt is seen: a device that never had the room's keys finds nothing there."""
        found = await self._marked_posts(room, set(outbox_ids))
        return {row: event_id for (row, page), event_id in found.items() if page == 1}

    async def find_pages(self, room: str, outbox_id: int, *, threads=()) -> dict[int, str]:
        """The posted pages of a long message: page number (from 1) -> event id."""
        found = await self._marked_posts(room, {outbox_id})
        return {page: event_id for (_row, page), event_id in found.items()}

    async def _marked_posts(self, room: str, wanted: set[int]) -> dict[tuple[int, int], str]:
        room_id = room.split(":", 1)[1]
        found: dict[tuple[int, int], str] = {}
        try:
            resp = await self.client.room_messages(
                room_id, direction=MessageDirection.back, limit=_LOOK_BACK,
                message_filter={"senders": [self.client.user_id], "types": ["m.room.message", ENCRYPTED]})
        except LocalProtocolError as e:
            raise TransientSendError(f"not logged in yet: {e}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise TransientSendError(f"homeserver unreachable: {_one_line(e)}") from None
        if not isinstance(resp, RoomMessagesResponse):
            await self._raise_for(resp, room_id)
        for event in resp.chunk:  # decrypted by nio where it holds the keys
            content = (getattr(event, "source", None) or {}).get("content") or {}
            row, page = content.get(OUTBOX_KEY), content.get(_PAGE_KEY, 1)
            if isinstance(row, int) and row in wanted and isinstance(page, int) and event.event_id:
                found.setdefault((row, page), event.event_id)
        return found

    async def _send_image(self, room_id: str, image: dict[str, Any], txn: str,
                          marks: dict[str, Any] | None = None) -> str:
        """A briefing's timeline picture, as m.image after its text; returns its event id. `marks`: the row and
        page it is (its own page, from delivery). Given with the text in one payload (no marks: the text's page
        would be found twice), a retry resends the text under the same transaction id (the homeserver answers
        with the first event), then tries the picture again."""
        data = base64.b64decode(image["data_b64"])
        name = image.get("filename") or "timeline.png"
        try:
            # In an encrypted room the picture is uploaded encrypted; its key travels in the encrypted event.
            encrypt = self.crypto.on and self.crypto.encrypted(room_id)
            up, keys = await self.client.upload(io.BytesIO(data), content_type="image/png", filename=name,
                                                filesize=len(data), encrypt=encrypt)
            if not isinstance(up, UploadResponse):
                await self._raise_for(up, room_id)
            content = {"msgtype": "m.image", "body": name, "info": {"mimetype": "image/png", "size": len(data)},
                       **(marks or {})}
            if encrypt:
                content["file"] = {"url": up.content_uri, **keys}
            else:
                content["url"] = up.content_uri
            resp = await self.client.room_send(room_id, "m.room.message", content, tx_id=txn,
                                               ignore_unverified_devices=True)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            # Sent again by this device under the same transaction id: the homeserver answers with the first.
            raise TransientSendError(f"homeserver unreachable: {_one_line(e)}") from None
        if not isinstance(resp, RoomSendResponse):
            await self._raise_for(resp, room_id)
        return resp.event_id

    async def _raise_for(self, resp: ErrorResponse, room_id: str) -> None:
        code = resp.status_code
        if code in _AUTH:
            # Logged out or the token revoked: nothing goes through until we log in again (the sync loop does,
            # with a password) or an operator gives a new token; delivery marks Matrix down meanwhile.
            self._logged_in = False
            raise PlatformAuthError(f"the homeserver refused our access token ({code})")
        if code == "M_LIMIT_EXCEEDED":
            raise TransientSendError("rate limited", (resp.retry_after_ms or 1000) / 1000)
        if code == "M_FORBIDDEN":
            # Usually not joined yet (invited after we started): join and try again. Already in the room means
            # the room will not let us post (power levels): retrying would hold its queue forever.
            if room_id not in self.client.rooms and await self._join(room_id):
                raise TransientSendError("joined the room; sending again", 0.05)
            raise PermanentSendError(f"not allowed to post in {room_id}: {resp.message}")
        if code in _PERMANENT:
            raise PermanentSendError(f"{code}: {resp.message}")
        status = getattr(getattr(resp, "transport_response", None), "status", None) or 0
        raise TransientSendError(_one_line(resp), (resp.retry_after_ms / 1000) if resp.retry_after_ms else None,
                                 ambiguous=status >= 500)


class _Stopping(Exception):
    """Stopping while the database is unreachable: leave the batch (and its token) for the next start."""


class _Retry(Exception):
    def __init__(self, reason: str, retry_after_ms: int | None = None):
        super().__init__(reason)
        self.retry_after = retry_after_ms / 1000 if retry_after_ms else None


def _after_own_join(events: list[dict[str, Any]], me: str) -> list[dict[str, Any]]:
    """Events after we joined: a room joined mid-run shows its history, which we must not answer."""
    for i in range(len(events) - 1, -1, -1):
        e = events[i]
        if e.get("type") == "m.room.member" and e.get("state_key") == me \
                and (e.get("content") or {}).get("membership") == "join" \
                and ((e.get("unsigned") or {}).get("prev_content") or {}).get("membership") != "join":
            return events[i + 1:]
    return events


def _txn_id(room: str, kind: str, payload: dict[str, Any]) -> str:
    """The same outbox row always gets the same transaction id, so a send whose answer was lost (timeout,
    crash) is deduplicated by the homeserver instead of posted twice."""
    if payload.get("outbox_id") is None:
        return uuid.uuid4().hex
    key = f"{room}|{kind}|{payload.get('outbox_created', '')}|{payload.get('text', '')}"
    return f"wf{payload['outbox_id']}-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def _marked(payload: dict[str, Any]) -> dict[str, Any]:
    """The content keys naming the post's outbox row (and page), for `find_sent`; inside the encrypted payload
    in an encrypted room."""
    mark = outbox_mark(payload)
    keys = {"outbox_id": OUTBOX_KEY, "page": _PAGE_KEY}
    return {keys[name]: value for name, value in mark.items()}


def _one_line(e: object) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__
