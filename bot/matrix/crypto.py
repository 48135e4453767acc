"""End-to-end encryption for the Matrix adapter: one device whose keys live in `store_path`, key upkeep
between syncs, and messages that cannot be decrypted yet kept until their keys come.

Trust on first use: room keys go to every device of a room's members that the bot has not been told to
distrust (nio's `ignore_unverified_devices`), and a device seen once is trusted from then on. The bot verifies
nobody; an operator who must exclude a device removes that user from the room.

A message the bot cannot read is kept in the database (key/value table) with the room it came from, so a
restart does not lose it: its keys are asked for, every sync tries it again, and the adapter hands it on once
it decrypts (the handled-event claims make a late key lead to exactly one answer). After `unreadable_after`
seconds without keys, the sender is told once, through the outbox.

The bot's own devices: each replica is a device of the bot's account (contract, "Several replicas"), and
writes its device id and keys into the database when it logs in (storage/devices.py). Exactly those are the
bot's own: verified, so they get the room keys they ask for (the replica that takes over can read what was said
before it joined). Any other device of the bot's account — one that merely logged in with the bot's password —
is blacklisted: it is answered no key request and the bot shares no room key with it, so a leaked password does
not hand over the encrypted rooms' history. Other people's devices are not answered either: their own clients
hold their room keys (nio hands on only our own account's requests, and re-shares only with our own devices).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from nio import (AsyncClient, AsyncClientConfig, EncryptionError, ErrorResponse, LocalProtocolError, MegolmEvent,
                 RoomKeyRequest)
from nio.store import SqliteStore

from watchfloor.config import MatrixConfig
from watchfloor.storage import devices
from watchfloor.storage.kv import kv_get, kv_set

from watchfloor.bot.matrix.check import les_rooms, unencrypted_les_warning

log = logging.getLogger("watchfloor.matrix")

ENCRYPTED = "m.room.encrypted"
_KEEP_FOR = timedelta(days=1)  # an unreadable message is still tried this long after its sender was told
_ASK_WAIT = 120.0  # seconds a key request of a device not (yet) known as one of our replicas is kept


def make_client(config: MatrixConfig) -> AsyncClient:
    """The nio client; with encryption, its Olm account and room keys in `store_path` under the device id,
    so a restart (password login reuses the configured device id) keeps the same device and every key."""
    if config.encryption:
        os.makedirs(config.store_path, exist_ok=True)
    return AsyncClient(
        config.homeserver, config.user_id, device_id=config.device_id,
        store_path=config.store_path if config.encryption else "",
        config=AsyncClientConfig(
            # We retry ourselves: a flood or an outage must never stall the loop inside nio.
            max_limit_exceeded=0, max_timeouts=0, request_timeout=20,
            # Our own sync token lives in our database (see matrix.py); nio's would disagree with it.
            encryption_enabled=config.encryption, store=SqliteStore, store_sync_tokens=False))


class Crypto:
    def __init__(self, client: AsyncClient, parts, config: MatrixConfig, unreadable_after: float = 60.0):
        self.client = client
        self.parts = parts
        self.config = config
        self.unreadable_after = timedelta(seconds=unreadable_after)
        self._lock = asyncio.Lock()
        self._key = f"matrix.unreadable:{config.user_id}:{config.device_id}"
        self.pending: dict[str, dict[str, Any]] | None = None  # event id -> {room, source, seen, told}
        self._dirty = False
        self._store_lost = False
        # Our other devices' key requests (with when they came), answered at the next upkeep.
        self._asked: list[tuple[float, RoomKeyRequest]] = []
        # The replicas' devices as the database lists them (device id -> its keys), read at each upkeep; none
        # until read: nobody is trusted before we know.
        self.replicas: dict[str, tuple[str, str]] = {}
        client.add_to_device_callback(self._on_key_request, RoomKeyRequest)

    @property
    def on(self) -> bool:
        return self.client.olm is not None

    def encrypted(self, room_id: str) -> bool:
        room = self.client.rooms.get(room_id)
        return bool((room is not None and room.encrypted) or room_id in self.client.encrypted_rooms)

    def les_barred(self, room: str) -> bool:
        """For the directory: a Matrix room not (known to be) encrypted gets nothing marked LES. Asked at the
        moment of posting, so a room encrypted later is cleared for LES again without a restart."""
        return room.startswith("matrix:") and not self.encrypted(room.split(":", 1)[1])

    def les_warnings(self, settings) -> list[str]:
        """Matrix rooms cleared for LES that are not encrypted (as the last sync showed them)."""
        return [unencrypted_les_warning(rid, self.config) for rid in les_rooms(settings)
                if not self.encrypted(rid)]

    # ------------------------------------------------------------------ keys

    def register(self) -> None:
        """Blocking (call in a thread), once logged in: this replica's device and keys go into the database, so
        the other replicas trust it (and it them)."""
        if not self.on:
            return
        keys = self.client.olm.account.identity_keys
        with self.parts.db.session() as s:
            devices.register(s, self.client.user_id, self.client.device_id, keys["curve25519"], keys["ed25519"],
                             self.parts.engine.clock())

    def _read_replicas(self) -> dict[str, tuple[str, str]]:
        with self.parts.db.session() as s:
            return devices.replicas(s, self.client.user_id)

    async def upkeep(self) -> None:
        """What nio's sync_forever does between syncs: our keys up, others' keys fetched, Olm sessions made,
        queued to-device messages (key shares, key requests) sent; and which devices of our account are ours."""
        if not self.on:
            return
        try:
            self.replicas = await asyncio.to_thread(self._read_replicas)
        except Exception as e:  # the last list stands until the database answers again
            log.warning("matrix: could not read the bot's registered devices (%s)", str(e).splitlines()[0] if
                        str(e) else type(e).__name__)
        async with self._lock:
            if self.client.should_upload_keys:
                resp = await self.client.keys_upload()
                if isinstance(resp, ErrorResponse) and "already exists" in str(resp) and not self._store_lost:
                    self._store_lost = True
                    log.error("matrix: the homeserver holds other keys for device %s: its store (%s) was lost or "
                              "replaced, so the bot cannot read encrypted rooms. Delete that device (or set a new "
                              "device_id) and restart.", self.config.device_id, self.config.store_path)
                elif not self._store_lost:
                    _warn_if_error(resp, "uploading our keys")
            if self.client.should_query_keys:
                _warn_if_error(await self.client.keys_query(), "fetching device keys")
            trust_own_devices(self.client, self.replicas)
            self._answer_own_devices()
            if self.client.should_claim_keys:
                _warn_if_error(await self.client.keys_claim(self.client.get_users_for_key_claiming()),
                               "claiming one-time keys")
                # Requests that waited for an Olm session are back in nio's queue: answered now, not at the end
                # of the next long poll.
                for event in self.client.olm.collect_key_requests():
                    if isinstance(event, RoomKeyRequest):
                        await self._on_key_request(event)
                self._answer_own_devices()
            await self.client.send_to_device_messages()

    async def _on_key_request(self, event: RoomKeyRequest) -> None:
        """nio hands on the key requests it will not answer by itself: our account's devices it does not trust
        (yet: a replica registered since the last upkeep; or never: a device that is not one of our replicas).
        Another user's request never gets here with nio 0.26 (it drops those itself); the sender check keeps it so
        should nio ever hand them on, and no test can tell it from nio's own (issue 28; the end-to-end promise is
        tests/test_guards_matrix.py::test_another_users_device_asking_the_bot_for_a_room_key_gets_nothing)."""
        if event.sender != self.client.user_id or event.requesting_device_id == self.client.device_id:
            return
        if getattr(event, "session_id", None) is None:
            return  # a cancellation: nothing to share
        self._asked.append((time.monotonic(), event))
        self.client.olm.users_for_key_query.add(event.sender)  # a replica that just started is not known yet

    def _answer_own_devices(self) -> None:
        """Share the asked-for room keys with our replicas' devices; a device whose keys we have not fetched yet
        waits for the next upkeep, one with no Olm session yet gets one claimed and is answered after it. A device
        that is not one of our replicas is not answered: its request waits a while (a replica registered after our
        last look at the database is answered at the next), then is dropped."""
        waiting = []
        now = time.monotonic()
        for asked, event in self._asked:
            device = self.client.device_store.active_user_devices and next(
                (d for d in self.client.device_store.active_user_devices(event.sender)
                 if d.id == event.requesting_device_id), None)
            if device is not None:
                trust_own_devices(self.client, self.replicas)
            if device is None or not is_replica(device, self.replicas):
                if now - asked < _ASK_WAIT:
                    waiting.append((asked, event))
                elif device is not None:
                    log.warning("matrix: device %s of the bot's account asked for room keys; it is not one of our "
                                "replicas (not registered in the database): not answered", device.id)
                continue
            try:
                self.client.continue_key_share(event)
                log.info("matrix: shared the keys of %s with our device %s", event.session_id, device.id)
            except LocalProtocolError:
                pass  # answered already, or cancelled
        self._asked = waiting

    async def before_send(self, room_id: str) -> None:
        """Room keys shared with the room's devices before encrypting (nio would do this inside room_send,
        but unguarded against our upkeep running at the same time)."""
        if not self.on or not self.encrypted(room_id):
            return
        async with self._lock:
            room = self.client.rooms[room_id]
            if not room.members_synced:
                await self.client.joined_members(room_id)
            if self.client.should_query_keys:
                _warn_if_error(await self.client.keys_query(), "fetching device keys")
                trust_own_devices(self.client, self.replicas)  # a device of ours that just appeared, too
            if self.client.olm.should_share_group_session(room_id):
                await self.client.share_group_session(room_id, ignore_unverified_devices=True)

    # ------------------------------------------------------------------ unreadable messages

    def load(self) -> None:
        """Blocking (call in a thread): the kept messages from the database."""
        with self.parts.db.session() as s:
            raw = kv_get(s, self._key)
        self.pending = json.loads(raw) if raw else {}

    def save(self) -> None:
        """Blocking (call in a thread); saved before the sync token moves past a kept message."""
        if not self._dirty or self.pending is None:
            return
        with self.parts.db.session() as s:
            kv_set(s, self._key, json.dumps(self.pending), self.parts.engine.clock())
        self._dirty = False

    async def keep(self, room_id: str, source: dict[str, Any]) -> None:
        event_id = source.get("event_id")
        if not event_id or event_id in self.pending:
            return
        log.warning("matrix: cannot decrypt %s in %s yet; keeping it and asking for its keys", event_id, room_id)
        self.pending[event_id] = {"room": room_id, "source": source, "seen": _now(self.parts).isoformat(),
                                  "told": False}
        self._dirty = True
        await self._request_keys(room_id, source)

    async def _request_keys(self, room_id: str, source: dict[str, Any]) -> None:
        event = _megolm(room_id, source)
        if event is None or not self.on:
            return
        try:
            await self.client.request_room_key(event)
        except LocalProtocolError:
            pass  # asked already for this session
        except Exception as e:  # noqa: BLE001 - asking is best effort; the sender may share the keys anyway
            log.warning("matrix: could not ask for the keys of %s (%s)", source.get("event_id"), e)

    def readable(self) -> list[tuple[str, dict[str, Any]]]:
        """Kept messages whose keys have come: (room id, decrypted event source), in the order they came."""
        out = []
        if not self.on or not self.pending:
            return out
        for event_id, entry in list(self.pending.items()):
            event = _megolm(entry["room"], entry["source"])
            if event is None or self.client.olm.inbound_group_store.get(
                    entry["room"], event.sender_key, event.session_id) is None:
                continue  # its key has not come (trying would only log a decryption failure each sync)
            try:
                decrypted = self.client.decrypt_event(event) if event is not None else None
            except EncryptionError:
                continue
            if decrypted is None or isinstance(decrypted, MegolmEvent) or not hasattr(decrypted, "source"):
                continue
            source = dict(decrypted.source)
            source.setdefault("event_id", event_id)
            source.setdefault("sender", entry["source"].get("sender"))
            out.append((entry["room"], source))
        return out

    def done(self, event_id: str) -> None:
        if self.pending and self.pending.pop(event_id, None) is not None:
            self._dirty = True

    def overdue(self) -> list[tuple[str, dict[str, Any]]]:
        """Kept messages whose sender must now be told (once) that the bot could not read them; the too old
        are forgotten."""
        now = _now(self.parts)
        out = []
        for event_id, entry in list((self.pending or {}).items()):
            seen = datetime.fromisoformat(entry["seen"])
            if now - seen > _KEEP_FOR:
                log.warning("matrix: giving up on %s: its keys never came", event_id)
                self.done(event_id)
            elif not entry["told"] and now - seen >= self.unreadable_after:
                out.append((event_id, entry))
        return out

    def notice(self, entry: dict[str, Any], sender_name: str | None) -> dict[str, Any]:
        """What the sender of a message still unreadable is told."""
        from watchfloor.templates import render

        sender = entry["source"].get("sender", "")
        at = datetime.fromtimestamp(entry["source"].get("origin_server_ts", 0) / 1000, timezone.utc)
        # A Matrix room may serve any zone: the time in UTC, dated unless it is today (the `clock` filter).
        return render("unreadable.j2", sender=f"matrix:{sender}", sender_name=sender_name or sender, at=at,
                      utc=timezone.utc, now=datetime.now(timezone.utc)).to_dict()

    def told(self, event_id: str) -> None:
        if self.pending and event_id in self.pending:
            self.pending[event_id]["told"] = True
            self._dirty = True

    def tell(self, event_id: str, entry: dict[str, Any], sender_name: str | None) -> None:
        """Blocking (call in a thread): the notice goes into the outbox and the message is marked told, in one
        transaction. Delivery sends it like any reply (retried, in order, by whichever replica delivers Matrix);
        the dedupe key makes a crash between the two, or a second replica, store it once."""
        from watchfloor.storage import outbox

        kept = {**(self.pending or {}), event_id: {**entry, "told": True}}
        with self.parts.db.session() as s:
            payload = {**self.notice(entry, sender_name), "reply_to": event_id, "user": entry["source"].get("sender")}
            outbox.enqueue(s, room=f"matrix:{entry['room']}", kind="reply", payload=payload,
                           now=self.parts.engine.clock(), dedupe_key=f"unreadable:{event_id}")
            kv_set(s, self._key, json.dumps(kept), self.parts.engine.clock())
        self.told(event_id)


def is_replica(device, replicas: dict[str, tuple[str, str]]) -> bool:
    """One of our replicas' devices: registered in the database under its id, with the keys it has now (a
    device logged in under a registered id with keys of its own is not)."""
    return replicas.get(device.id) == (device.curve25519, device.ed25519)


def trust_own_devices(client: AsyncClient, replicas: dict[str, tuple[str, str]]) -> None:
    """Our account's other devices: the replicas' (registered in the database) are verified, so their key
    requests are answered and room keys are shared with them; any other is blacklisted, so it gets no room key
    at all. nio rotates a room's outgoing key when a device's trust changes, so a device blacklisted now cannot
    read what the bot says from then on either."""
    for device in client.device_store.active_user_devices(client.user_id):
        if device.id == client.device_id:
            continue
        if is_replica(device, replicas):
            if device.blacklisted:
                client.unblacklist_device(device)
            if not device.verified:
                client.verify_device(device)
        elif not device.blacklisted:
            log.warning("matrix: device %s of the bot's account is not one of our replicas (not registered in "
                        "the database): it gets no room keys", device.id)
            client.blacklist_device(device)


def _megolm(room_id: str, source: dict[str, Any]) -> MegolmEvent | None:
    event = MegolmEvent.parse_encrypted_event(source) if source.get("type") == ENCRYPTED else None
    if not isinstance(event, MegolmEvent):
        return None
    event.room_id = room_id
    return event


def _now(parts) -> datetime:
    return parts.engine.clock()


def _warn_if_error(resp, what: str) -> None:
    if isinstance(resp, ErrorResponse):
        log.warning("matrix: %s failed: %s", what, resp)
