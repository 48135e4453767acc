"""Exactly once at the platform: a post the platform took whose answer was lost (a timeout, a dropped
connection) is not posted again, nor is one a replica sent and died before recording; the next replica — on
Matrix another device, which the homeserver's transaction ids do not cover — finds it there and records it.
Slack through the Web API stand-in (which keeps each channel's messages with their metadata); Matrix against
the real Synapse, with a proxy that lets the homeserver take a post and never passes its answer back."""
from __future__ import annotations

import asyncio
import base64
import json
import struct
import tempfile
import zlib

import aiohttp
import pytest
from aiohttp import web

from watchfloor.bot import paging
from watchfloor.bot.delivery import LIMITS, Delivery, _pages
from watchfloor.bot.matrix.adapter import MatrixAdapter
from watchfloor.bot.slack.adapter import SlackAdapter
from watchfloor.storage import outbox
from tests.helpers import make_parts
from tests.matrix_harness import from_bot, history, make_world, wait_for
from tests.test_delivery_failures import enqueue, rows
from tests.test_slack_adapter import WATCH, slack_settings

SLACK_WATCH = f"slack:{WATCH}"


def slack_parts(db_url, clock, api):
    parts = make_parts(db_url, clock, **slack_settings(api.base_url))
    return parts, SlackAdapter(parts, parts.settings.slack)


async def deliver_until_settled(delivery: Delivery, adapter, parts, room: str, clock=None, rounds: int = 30):
    """Passes of the real worker until no row of the room is pending (a fake clock is moved past each retry)."""
    for _ in range(rounds):
        await delivery.run_once(adapter)
        if not [r for r in await asyncio.to_thread(rows, parts, room) if r.status == outbox.PENDING]:
            return
        if clock is not None:
            clock.advance(minutes=1)
        else:
            await asyncio.sleep(0.3)
    raise AssertionError(f"rows of {room} still pending: {await asyncio.to_thread(rows, parts, room)}")


def texts(messages) -> list[str]:
    return [m.get("text") for m in messages]


# ------------------------------------------------------------------------------------------------ Slack


@pytest.mark.parametrize("fault", ["timeout", "dropped"])
async def test_a_slack_post_taken_whose_answer_was_lost_is_not_posted_again(sqlite_url, clock, slack_api, fault):
    parts, adapter = slack_parts(sqlite_url, clock, slack_api)
    [first, second] = enqueue(parts, SLACK_WATCH, "CF-1 pilot boarding overlaps patrol", "CF-2 cleared")
    if fault == "timeout":
        slack_api.stall_after_next("chat.postMessage", 2.0)  # taken, then no answer before our timeout
        timeout = 0.5
    else:
        # Taken, then the connection closes without an answer: nor may slack_sdk post it again on its own
        # (its connection-error retry comes within the send's time here).
        slack_api.drop_after_next("chat.postMessage")
        timeout = 5.0
    delivery = Delivery(parts, [adapter], send_timeout=timeout, health_ttl=0)
    try:
        await deliver_until_settled(delivery, adapter, parts, SLACK_WATCH, clock)
    finally:
        await adapter.stop()

    shown = slack_api.messages_in(WATCH)
    assert texts(shown) == ["CF-1 pilot boarding overlaps patrol", "CF-2 cleared"]  # each once, in order
    assert len(slack_api.calls_to("chat.postMessage")) == 2  # the lost answer's post was never made again
    assert slack_api.calls_to("conversations.history")  # it was looked for instead
    sent = {r.id: r for r in rows(parts, SLACK_WATCH)}
    assert sent[first].status == sent[second].status == outbox.SENT
    assert [sent[first].remote_id, sent[second].remote_id] == [m["ts"] for m in shown]  # edits find the post
    assert shown[0]["metadata"] == {"event_type": "watchfloor_outbox", "event_payload": {"outbox_id": first}}
    parts.db.dispose()


async def test_a_slack_post_a_dead_replica_made_and_never_recorded_is_not_posted_again(sqlite_url, clock, slack_api):
    parts, adapter = slack_parts(sqlite_url, clock, slack_api)
    [first, second] = enqueue(parts, SLACK_WATCH, "CF-3 alert", "CF-4 alert")
    # The dead replica: the post went out (its payload names the row, as delivery builds it), then the process
    # died before writing the row as sent.
    job = Delivery(parts, [adapter])._rebuild(first)
    await adapter.send(job.room, job.kind, job.payload)
    assert rows(parts, SLACK_WATCH)[0].status == outbox.PENDING

    replica = Delivery(parts, [adapter], health_ttl=0)
    await deliver_until_settled(replica, adapter, parts, SLACK_WATCH, clock)
    assert texts(slack_api.messages_in(WATCH)) == ["CF-3 alert", "CF-4 alert"]
    assert len(slack_api.calls_to("chat.postMessage")) == 2
    # Once per room, not per row: the normal path asks Slack nothing more.
    enqueue(parts, SLACK_WATCH, "CF-5 alert", "CF-6 alert")
    await deliver_until_settled(replica, adapter, parts, SLACK_WATCH, clock)
    await adapter.stop()
    assert texts(slack_api.messages_in(WATCH))[2:] == ["CF-5 alert", "CF-6 alert"]
    assert len(slack_api.calls_to("conversations.history")) == 1
    parts.db.dispose()


async def test_without_the_history_scope_slack_posts_are_sent_all_the_same(sqlite_url, clock, slack_api):
    """An app installed without `channels:history` cannot look: it sends as before (at least once) rather than
    hold the channel; a look-up Slack cannot answer now holds the row until it can."""
    parts, adapter = slack_parts(sqlite_url, clock, slack_api)
    enqueue(parts, SLACK_WATCH, "CF-8 alert")
    slack_api.fail_next("conversations.history", status=503)
    replica = Delivery(parts, [adapter], health_ttl=0)
    await replica.run_once(adapter)
    assert not slack_api.calls_to("chat.postMessage")  # not known whether it is there: not sent yet
    clock.advance(minutes=1)
    slack_api.fail_next("conversations.history", error="missing_scope")
    await deliver_until_settled(replica, adapter, parts, SLACK_WATCH, clock)
    await adapter.stop()
    assert texts(slack_api.messages_in(WATCH)) == ["CF-8 alert"]
    parts.db.dispose()


@pytest.mark.parametrize("posted, recorded", [(1, 0), (2, 1)])
async def test_a_long_slack_message_a_dead_replica_half_posted_shows_each_page_once(sqlite_url, clock, slack_api,
                                                                                   posted, recorded):
    """Two pages (60 blocks, Slack takes 50): the dead replica posted `posted` of them and recorded `recorded`
    (a page is recorded before the next is posted, so at most the last one posted is not)."""
    parts, adapter = slack_parts(sqlite_url, clock, slack_api)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"vessel {i}"}} for i in range(60)]
    with parts.db.session() as s:
        row_id = outbox.enqueue(s, room=SLACK_WATCH, kind="briefing", now=clock(),
                                payload={"text": "Morning briefing", "blocks": blocks}).id
    dead = Delivery(parts, [adapter])
    job = dead._rebuild(row_id)
    pages = paging.pages(job.kind, job.payload, LIMITS["slack"])
    assert len(pages) == 2
    ids = [await adapter.send(job.room, job.kind, page) for page in pages[:posted]]
    dead._record_pages(row_id, ids[:recorded])

    replica = Delivery(parts, [adapter], health_ttl=0)
    await deliver_until_settled(replica, adapter, parts, SLACK_WATCH, clock)
    await adapter.stop()
    shown = slack_api.messages_in(WATCH)
    assert [len(m["blocks"]) for m in shown] == [50, 10]  # each page once, in order
    [row] = rows(parts, SLACK_WATCH)
    assert row.status == outbox.SENT and row.remote_id == shown[0]["ts"]
    parts.db.dispose()


# ------------------------------------------------------------------------------------------------ Matrix


class SwallowingProxy:
    """An HTTP proxy in front of Synapse that, once armed, forwards the next event send to the homeserver and
    never answers it (the homeserver took the event; the client waits until it gives up)."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.armed = False
        self.pass_first = 0  # armed: message sends let through (answered) before the one swallowed
        self.swallowed: list[str] = []
        self.sends = 0  # event sends that reached the homeserver through here
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._release = asyncio.Event()

    async def __aenter__(self) -> "SwallowingProxy":
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = "http://127.0.0.1:%d" % self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._release.set()
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=await request.read()) as resp:
            body = await resp.read()
            if request.method == "PUT" and "/send/" in request.path:
                self.sends += 1
            if self.armed and request.method == "PUT" and "/send/m.room.message/" in request.path \
                    and not self._passed():
                self.armed = False
                self.swallowed.append(request.path)
                await self._release.wait()  # taken upstream; the answer never comes (the client gave up)
            out = {k: v for k, v in resp.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection")}
            return web.Response(status=resp.status, body=body, headers=out)

    def _passed(self) -> bool:
        if self.pass_first:
            self.pass_first -= 1
            return True
        return False


def matrix_config(world, homeserver: str, device: str) -> dict:
    """The bot's account as one replica logs it in: its own device (and key store), as another host would."""
    return {**world.settings["matrix"], "homeserver": homeserver, "device_id": device,
            "store_path": tempfile.mkdtemp(prefix=f"wf-{device.lower()}-")}


async def started(world, db_url, homeserver: str, device: str, config: dict | None = None):
    config = {**(config or matrix_config(world, homeserver, device)), "homeserver": homeserver}
    parts = await asyncio.to_thread(make_parts, db_url, **{**world.settings, "matrix": config})
    adapter = MatrixAdapter(parts, parts.settings.matrix, sync_timeout_ms=1000, retry_cap=1.0)

    async def ignore(_msg):
        pass
    await adapter.start(ignore)
    rooms = [r.split(":", 1)[1] for r in world.settings["zone"][0]["joint_rooms"]]

    async def synced():  # joined and seen by a sync: the room's encryption state is known
        return all(r in adapter.client.rooms for r in rooms)
    await wait_for(synced, timeout=20)
    return parts, adapter


def bot_events(events, world, outbox_id: int):
    return [e for e in from_bot(events, world.bot_user["user_id"])
            if e["content"].get("org.watchfloor.outbox") == outbox_id]


@pytest.mark.synapse
async def test_a_matrix_send_the_homeserver_took_is_not_posted_again_by_another_device(synapse, sqlite_url):
    world = make_world(synapse, joint=1)
    room_id = world.joint[0]
    room = f"matrix:{room_id}"
    async with SwallowingProxy(synapse.base_url) as proxy:
        parts_a, a = await started(world, sqlite_url, proxy.url, "WFREPLICA1")
        [row_id] = enqueue(parts_a, room, "CF-5 pilot boarding overlaps patrol")
        proxy.armed = True
        replica_a = Delivery(parts_a, [a], send_timeout=1.5, health_ttl=0)
        await replica_a.run_once(a)  # taken by the homeserver; the answer never came back
        assert proxy.swallowed and rows(parts_a, room)[0].status == outbox.PENDING
        await a.stop()
        parts_a.db.dispose()

    # Another replica, another device: the homeserver's transaction id does not cover it.
    parts_b = await take_over(room, world, sqlite_url, synapse.base_url, "WFREPLICA2")
    shown = bot_events(await history(synapse, world.alice, room_id), world, row_id)
    assert [e["content"]["body"] for e in shown] == ["CF-5 pilot boarding overlaps patrol"]
    assert rows(parts_b, room)[0].remote_id == shown[0]["event_id"]
    parts_b.db.dispose()


@pytest.mark.synapse
async def test_a_matrix_post_a_dead_replica_never_recorded_appears_once(synapse, sqlite_url):
    world = make_world(synapse, joint=1)
    room_id = world.joint[0]
    room = f"matrix:{room_id}"
    parts_a, a = await started(world, sqlite_url, synapse.base_url, "WFDEAD1")
    [first, second] = enqueue(parts_a, room, "CF-6 alert", "CF-7 alert")
    job = Delivery(parts_a, [a])._rebuild(first)
    posted = await a.send(job.room, job.kind, job.payload)  # sent; the process dies before recording it
    await a.stop()
    parts_a.db.dispose()

    parts_b = await take_over(room, world, sqlite_url, synapse.base_url, "WFTAKEOVER2")

    events = from_bot(await history(synapse, world.alice, room_id), world.bot_user["user_id"])
    assert [e["content"]["body"] for e in events] == ["CF-6 alert", "CF-7 alert"]  # each once, in order
    by_id = {r.id: r for r in rows(parts_b, room)}
    assert by_id[first].status == outbox.SENT and by_id[first].remote_id == posted
    assert by_id[second].remote_id == events[1]["event_id"]
    parts_b.db.dispose()


async def take_over(room: str, *args):
    """Another replica (`started(*args)`) takes the room's delivery over, delivers until nothing is waiting and
    stops; its parts, for reading the rows."""
    parts, adapter = await started(*args)
    try:
        await deliver_until_settled(Delivery(parts, [adapter], health_ttl=0), adapter, parts, room)
    finally:
        await adapter.stop()
    return parts


async def encrypted_joint_room(synapse, world) -> tuple[str, str]:
    """An encrypted room Alice makes and invites the bot to, the zone's one joint room: (room id, outbox room)."""
    room_id = await asyncio.to_thread(
        synapse.create_room, world.alice.token, name="enc", invite=[world.bot_user["user_id"]],
        initial_state=[{"type": "m.room.encryption", "state_key": "",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    world.settings["zone"][0]["joint_rooms"] = [f"matrix:{room_id}"]
    return room_id, f"matrix:{room_id}"


@pytest.mark.synapse
async def test_in_an_encrypted_room_the_mark_is_ciphertext_and_the_same_device_finds_its_post(synapse, sqlite_url):
    """The row's mark travels inside the encrypted payload; a restarted replica of the same device decrypts its
    own post and records it instead of sending it again (nothing reaches the homeserver)."""
    world = make_world(synapse, joint=1)
    bot_id = world.bot_user["user_id"]
    room_id, room = await encrypted_joint_room(synapse, world)
    config = matrix_config(world, synapse.base_url, "WFSAME")
    parts_a, a = await started(world, sqlite_url, synapse.base_url, "WFSAME", config)
    assert a.crypto.encrypted(room_id)
    [row_id] = enqueue(parts_a, room, "CF-9 alert")
    job = Delivery(parts_a, [a])._rebuild(row_id)
    posted = await a.send(job.room, job.kind, job.payload)  # sent; not recorded
    await a.stop()
    parts_a.db.dispose()
    wire = from_bot(await history(synapse, world.alice, room_id), bot_id, "m.room.encrypted")
    assert [e["event_id"] for e in wire] == [posted] and "org.watchfloor" not in str(wire[0]["content"])

    async with SwallowingProxy(synapse.base_url) as proxy:
        parts_b = await take_over(room, world, sqlite_url, proxy.url, "WFSAME", config)
    assert proxy.sends == 0
    [row] = rows(parts_b, room)
    assert row.status == outbox.SENT and row.remote_id == posted
    parts_b.db.dispose()


# ------------------------------------------------------------------------------------------------ a briefing's picture
# Two platform calls, the text then the picture: a worker killed between them, or after both and before recording
# the row, leaves the next worker to post the picture once, and never the text again.


def one_pixel_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x1f\x4e\x79")) + chunk(b"IEND", b""))


PNG = one_pixel_png()
BRIEFING = "Morning briefing LALB"


def briefing_row(parts, room: str) -> int:
    with parts.db.session() as s:
        return outbox.enqueue(s, room=room, kind="briefing", now=parts.engine.clock(), payload={
            "text": BRIEFING,
            "image": {"filename": "lalb-timeline.png", "data_b64": base64.b64encode(PNG).decode()}}).id


def as_posted(delivery: Delivery, adapter, row_id: int):
    """The row as delivery posts it: its job and its posts (the text, then the picture alone)."""
    job = delivery._rebuild(row_id)
    posts = _pages(adapter, job)
    assert [bool(p.get(paging.PICTURE)) for p in posts] == [False, True]
    return job, posts


async def kill_after_text(delivery: Delivery, adapter, parts, room: str, row_id: int) -> None:
    """The real worker, killed once it posted the text and recorded it (the picture under way): nothing more
    is done or written, as with SIGKILL."""
    worker = asyncio.create_task(delivery.run_once(adapter))

    async def text_recorded():
        return [r for r in await asyncio.to_thread(rows, parts, room) if r.id == row_id][0].page_ids
    await wait_for(text_recorded, timeout=10, interval=0.02)
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)


@pytest.mark.parametrize("death", ["killed during the upload", "died before recording the text"])
async def test_a_slack_briefing_whose_worker_died_after_its_text_gets_its_picture_once(sqlite_url, clock, slack_api,
                                                                                      death):
    parts, adapter = slack_parts(sqlite_url, clock, slack_api)
    row_id = briefing_row(parts, SLACK_WATCH)
    enqueue(parts, SLACK_WATCH, "CF-10 alert")
    dead = Delivery(parts, [adapter], health_ttl=0)
    if death == "killed during the upload":
        slack_api.stall_next("files.getUploadURLExternal", 3.0)
        await kill_after_text(dead, adapter, parts, SLACK_WATCH, row_id)
    else:
        job, (text, _picture) = as_posted(dead, adapter, row_id)
        await adapter.send(job.room, job.kind, text)
    assert not slack_api.calls_to("files.completeUploadExternal")
    assert rows(parts, SLACK_WATCH)[0].status == outbox.PENDING

    replica = Delivery(parts, [adapter], health_ttl=0)
    await deliver_until_settled(replica, adapter, parts, SLACK_WATCH, clock)
    await adapter.stop()
    shown = slack_api.messages_in(WATCH)
    assert texts(shown) == [BRIEFING, "", "CF-10 alert"]  # the text once, its picture under it, then the rest
    assert [f["title"] for f in shown[1]["files"]] == ["lalb-timeline.png"]
    assert slack_api.uploads[shown[1]["files"][0]["id"]] == PNG
    assert len(slack_api.calls_to("chat.postMessage")) == 2
    assert len(slack_api.calls_to("files.completeUploadExternal")) == 1
    briefing = rows(parts, SLACK_WATCH)[0]
    assert briefing.status == outbox.SENT and briefing.remote_id == shown[0]["ts"]
    parts.db.dispose()


@pytest.mark.parametrize("fault", ["died before recording", "the upload's answer was lost"])
async def test_a_slack_briefing_whose_text_and_picture_both_went_out_is_not_posted_again(sqlite_url, clock,
                                                                                        slack_api, fault):
    parts, adapter = slack_parts(sqlite_url, clock, slack_api)
    row_id = briefing_row(parts, SLACK_WATCH)
    enqueue(parts, SLACK_WATCH, "CF-12 alert")
    if fault == "died before recording":
        dead = Delivery(parts, [adapter])
        job, posts = as_posted(dead, adapter, row_id)
        for post in posts:
            await adapter.send(job.room, job.kind, post)
        worker = Delivery(parts, [adapter], health_ttl=0)  # the next holder
    else:
        slack_api.stall_after_next("files.completeUploadExternal", 2.0)  # shared; the answer comes too late
        worker = Delivery(parts, [adapter], send_timeout=0.5, health_ttl=0)
    await deliver_until_settled(worker, adapter, parts, SLACK_WATCH, clock)
    await adapter.stop()
    shown = slack_api.messages_in(WATCH)
    assert texts(shown) == [BRIEFING, "", "CF-12 alert"]
    assert len(slack_api.calls_to("chat.postMessage")) == 2
    assert len(slack_api.calls_to("files.completeUploadExternal")) == 1
    briefing = rows(parts, SLACK_WATCH)[0]
    assert briefing.status == outbox.SENT and briefing.remote_id == shown[0]["ts"]
    assert json.loads(briefing.page_ids) == [shown[0]["ts"], shown[1]["files"][0]["id"]]  # the picture found
    parts.db.dispose()


def picture_events(events, world, row_id: int) -> list[tuple[str, str, int | None]]:
    """The bot's posts for the row: (msgtype, body, page)."""
    return [(e["content"]["msgtype"], e["content"]["body"], e["content"].get("org.watchfloor.outbox_page"))
            for e in bot_events(events, world, row_id)]


@pytest.mark.synapse
@pytest.mark.parametrize("recorded", [True, False])
async def test_a_matrix_briefing_whose_worker_died_after_its_text_gets_its_picture_once(synapse, sqlite_url,
                                                                                       recorded):
    world = make_world(synapse, joint=1)
    room_id = world.joint[0]
    room = f"matrix:{room_id}"
    parts_a, a = await started(world, sqlite_url, synapse.base_url, "WFPICDEAD1")
    row_id = briefing_row(parts_a, room)
    enqueue(parts_a, room, "CF-13 alert")
    dead = Delivery(parts_a, [a])
    job, (text, _picture) = as_posted(dead, a, row_id)
    posted = await a.send(job.room, job.kind, text)  # the text went out; the process died before the picture
    if recorded:
        dead._record_pages(row_id, [posted])
    await a.stop()
    parts_a.db.dispose()

    parts_b = await take_over(room, world, sqlite_url, synapse.base_url, "WFPICTAKE2")
    events = await history(synapse, world.alice, room_id)
    assert [e["content"]["body"] for e in from_bot(events, world.bot_user["user_id"])] == [
        BRIEFING, "lalb-timeline.png", "CF-13 alert"]  # the text once, its picture once, then the rest
    assert [(t, body) for t, body, _page in picture_events(events, world, row_id)][1:] == [
        ("m.image", "lalb-timeline.png")]
    briefing = rows(parts_b, room)[0]
    assert briefing.status == outbox.SENT and briefing.remote_id == posted
    parts_b.db.dispose()


@pytest.mark.synapse
@pytest.mark.parametrize("fault", ["the picture's answer was lost", "died before recording"])
async def test_a_matrix_briefing_whose_text_and_picture_both_went_out_is_not_posted_again(synapse, sqlite_url,
                                                                                         fault):
    world = make_world(synapse, joint=1)
    room_id = world.joint[0]
    room = f"matrix:{room_id}"
    async with SwallowingProxy(synapse.base_url) as proxy:
        parts_a, a = await started(world, sqlite_url, proxy.url, "WFPICGONE1")
        row_id = briefing_row(parts_a, room)
        enqueue(parts_a, room, "CF-14 alert")
        if fault == "the picture's answer was lost":
            proxy.armed, proxy.pass_first = True, 1  # the text answered; the m.image taken, its answer never comes
            await Delivery(parts_a, [a], send_timeout=1.5, health_ttl=0).run_once(a)
            assert len(proxy.swallowed) == 1
        else:
            job, posts = as_posted(Delivery(parts_a, [a]), a, row_id)
            for post in posts:
                await a.send(job.room, job.kind, post)
        assert rows(parts_a, room)[0].status == outbox.PENDING
        await a.stop()
        parts_a.db.dispose()

    # Another replica, another device: the homeserver's transaction ids do not cover it.
    parts_b = await take_over(room, world, sqlite_url, synapse.base_url, "WFPICTAKE3")
    events = await history(synapse, world.alice, room_id)
    assert [e["content"]["body"] for e in from_bot(events, world.bot_user["user_id"])] == [
        BRIEFING, "lalb-timeline.png", "CF-14 alert"]  # each once
    mine = picture_events(events, world, row_id)
    assert [(t, page) for t, _body, page in mine][1:] == [("m.image", 2)]  # the picture names its row and page
    briefing = rows(parts_b, room)[0]
    shown = bot_events(events, world, row_id)
    assert briefing.status == outbox.SENT and json.loads(briefing.page_ids) == [e["event_id"] for e in shown]
    parts_b.db.dispose()


async def test_a_long_slack_briefing_whose_pages_went_out_gets_its_picture_once(sqlite_url, clock, slack_api):
    """Pages and picture together: 60 blocks (two pages) and a picture; the dead replica posted both pages and
    recorded the first. The next worker posts only the picture."""
    parts, adapter = slack_parts(sqlite_url, clock, slack_api)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"vessel {i}"}} for i in range(60)]
    with parts.db.session() as s:
        row_id = outbox.enqueue(s, room=SLACK_WATCH, kind="briefing", now=clock(), payload={
            "text": BRIEFING, "blocks": blocks,
            "image": {"filename": "lalb-timeline.png", "data_b64": base64.b64encode(PNG).decode()}}).id
    dead = Delivery(parts, [adapter])
    job = dead._rebuild(row_id)
    posts = _pages(adapter, job)
    assert [p["page"] for p in posts] == [1, 2, 3] and posts[-1].get(paging.PICTURE)
    ids = [await adapter.send(job.room, job.kind, post) for post in posts[:2]]
    dead._record_pages(row_id, ids[:1])

    replica = Delivery(parts, [adapter], health_ttl=0)
    await deliver_until_settled(replica, adapter, parts, SLACK_WATCH, clock)
    await adapter.stop()
    shown = slack_api.messages_in(WATCH)
    assert [len(m.get("blocks") or []) for m in shown] == [50, 10, 0]  # each page once, then the picture
    assert [f["title"] for f in shown[2]["files"]] == ["lalb-timeline.png"]
    assert len(slack_api.calls_to("chat.postMessage")) == 2
    assert len(slack_api.calls_to("files.completeUploadExternal")) == 1
    [row] = rows(parts, SLACK_WATCH)
    assert row.status == outbox.SENT and row.remote_id == shown[0]["ts"]
    parts.db.dispose()


@pytest.mark.synapse
async def test_in_an_encrypted_room_the_same_device_finds_its_briefing_and_picture(synapse, sqlite_url):
    """The picture's mark travels inside the encrypted m.image; a restarted replica of the same device decrypts
    both posts and records the row: nothing reaches the homeserver."""
    world = make_world(synapse, joint=1)
    bot_id = world.bot_user["user_id"]
    room_id, room = await encrypted_joint_room(synapse, world)
    config = matrix_config(world, synapse.base_url, "WFSAMEPIC")
    parts_a, a = await started(world, sqlite_url, synapse.base_url, "WFSAMEPIC", config)
    assert a.crypto.encrypted(room_id)
    row_id = briefing_row(parts_a, room)
    job, posts = as_posted(Delivery(parts_a, [a]), a, row_id)
    posted = [await a.send(job.room, job.kind, post) for post in posts]  # both sent; not recorded
    await a.stop()
    parts_a.db.dispose()
    wire = from_bot(await history(synapse, world.alice, room_id), bot_id, "m.room.encrypted")
    assert [e["event_id"] for e in wire] == posted and "org.watchfloor" not in str(wire)

    async with SwallowingProxy(synapse.base_url) as proxy:
        parts_b = await take_over(room, world, sqlite_url, proxy.url, "WFSAMEPIC", config)
    assert proxy.sends == 0
    [row] = rows(parts_b, room)
    assert row.status == outbox.SENT and json.loads(row.page_ids) == posted
    parts_b.db.dispose()
