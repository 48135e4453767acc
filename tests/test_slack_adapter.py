"""The Slack adapter as Slack sees it: signed HTTP requests to the real Bolt app, the local Slack Web API
stand-in answering its calls, and the outbox delivered through `SlackAdapter.send`."""
from __future__ import annotations

import asyncio
import base64
import socket
import time
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from sqlmodel import func, select

from watchfloor.bot.adapter import PermanentSendError, TransientSendError
from watchfloor.bot.delivery import Delivery
from watchfloor.bot.runner import Service
from watchfloor.bot.slack.adapter import SlackAdapter
from watchfloor.commands.message import ChatMessage
from watchfloor.storage.tables import ConflictRow, OperationRow, OutboxRow
from tests.fixtures.slack_api import (
    BOT_ID,
    apost_signed,
    block_action_body,
    event_body,
    slash_command_body,
)
from tests.helpers import make_parts

SECRET = "test-signing-secret"
JOINT, WATCH, OTHER = "C0JOINT", "C0WATCH", "C0RANDOM"
ALICE, BOB, SAM = "UALICE", "UBOB", "USAM"  # CBP member, USCG member, CBP supervisor
LOG_OP = "log boarding vessel=IMO9074729 at=33.74,-118.27 start=2026-12-01T14:00 end=2h"
OVERLAP = "log patrol at=33.741,-118.271 radius=1nm start=2026-12-01T15:00 end=2026-12-01T17:00"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slack_settings(api_url: str) -> dict:
    return dict(
        slack={"bot_token": "xoxb-test", "signing_secret": SECRET, "port": free_port(), "host": "127.0.0.1",
               "api_url": api_url},
        zone=[{"code": "LALB", "joint_rooms": [f"slack:{JOINT}"], "watch_rooms": [f"slack:{WATCH}"]}],
        agency=[{"code": "CBP", "members": [f"slack:{ALICE}"], "supervisors": [f"slack:{SAM}"]},
                {"code": "USCG", "members": [f"slack:{BOB}"]}],
    )


@asynccontextmanager
async def running(db_url, clock, api, seen: list | None = None, settings: dict | None = None, **adapter_kw):
    """The adapter wired to the one message path (`Service.on_message`), as `watchfloor run` wires it; the
    service's delivery worker is not started, so tests deliver the outbox by hand (`deliver`). `seen` records
    every message the adapter hands in."""
    parts = make_parts(db_url, clock, **(settings or slack_settings(api.base_url)))
    adapter = SlackAdapter(parts, parts.settings.slack, **adapter_kw)
    service = Service(parts, [adapter])

    async def on_message(msg):
        if seen is not None:
            seen.append(msg)
        await service.on_message(msg)

    await adapter.start(on_message)
    try:
        yield parts, adapter
    finally:
        await adapter.stop()


async def until(check, timeout: float = 10.0, what: str = "condition"):
    """Poll `check` (sync, may touch the database) until it is truthy; the work happens after Slack's ack."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def settle(adapter: SlackAdapter, handled: int | None = None):
    """Wait until the work of every request the adapter acknowledged has finished (counted at the ack, so work
    Bolt has not started yet counts too); with `handled`, also that this many requests were handled in all, so
    an assertion that nothing happened is about requests that really reached the adapter."""
    assert await adapter.idle(timeout=10), "the adapter's work did not finish"
    if handled is not None:
        assert adapter.handled == handled, f"{adapter.handled} requests handled, expected {handled}"


async def deliver(parts, adapter, max_rounds: int = 20) -> int:
    """Send what is due in the outbox with the real delivery worker, one pass at a time; returns rows tried."""
    worker = Delivery(parts, [adapter])
    tried = 0
    for _ in range(max_rounds):
        n = await worker.run_once(adapter)
        if n == 0 or worker.stats.retried:
            return tried + n
        tried += n
    return tried


def count(parts, table) -> int:
    with parts.db.session() as s:
        return s.exec(select(func.count()).select_from(table)).one()


async def slash(adapter, api, text, command="/op", user=ALICE, channel=JOINT, trigger="t1", name="r1", **kw):
    body = slash_command_body(command=command, text=text, user_id=user, channel_id=channel,
                              response_url=api.response_url(name), trigger_id=trigger)
    return await apost_signed(adapter.url, body, SECRET, **kw)


def message_event(text, user=ALICE, channel=JOINT, ts="1764600000.000100", **extra):
    return {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts, "event_ts": ts,
            "channel_type": "channel", **extra}


# --- slash commands ----------------------------------------------------------------------------------------


async def test_slash_command_logs_once_and_answers_in_channel(db_url, clock, slack_api):
    async with running(db_url, clock, slack_api) as (parts, adapter):
        started = time.monotonic()
        status, _ = await slash(adapter, slack_api, LOG_OP)
        assert status == 200 and time.monotonic() - started < 3  # acknowledged well within Slack's 3 s
        await until(lambda: count(parts, OperationRow) == 1, what="the operation to be stored")
        await deliver(parts, adapter)
        [answer] = slack_api.responses("r1")
        assert answer["response_type"] == "in_channel"
        assert "OP-1 logged" in answer["text"] and answer["blocks"][0]["type"] == "section"

        # Slack retries a command it thinks timed out: same trigger, X-Slack-Retry-Num. Never logged twice.
        status, _ = await slash(adapter, slack_api, LOG_OP, extra_headers={"X-Slack-Retry-Num": "1",
                                                                            "X-Slack-Retry-Reason": "http_timeout"})
        assert status == 200
        await settle(adapter, handled=2)  # the retry reached the adapter and was handled
        await deliver(parts, adapter)
        assert await asyncio.to_thread(count, parts, OperationRow) == 1
        assert len(slack_api.responses("r1")) == 1


async def test_errors_and_help_go_only_to_the_sender(sqlite_url, clock, slack_api):
    async with running(sqlite_url, clock, slack_api) as (parts, adapter):
        await slash(adapter, slack_api, "log patrol at=95,0", trigger="t1", name="bad")
        await slash(adapter, slack_api, "", command="/watchfloor", trigger="t2", name="help")
        await slash(adapter, slack_api, "list", command="/conflicts", user="UNOBODY", channel=OTHER,
                    trigger="t3", name="unbound")
        await settle(adapter, handled=3)
        await deliver(parts, adapter)
        [bad] = slack_api.responses("bad")
        assert bad["response_type"] == "ephemeral" and "latitude 95" in bad["text"]
        assert "Traceback" not in bad["text"]
        [help_] = slack_api.responses("help")
        assert help_["response_type"] == "ephemeral" and "op log" in help_["text"]
        [unbound] = slack_api.responses("unbound")
        assert unbound["response_type"] == "ephemeral" and "zone" in unbound["text"]
        assert await asyncio.to_thread(count, parts, OperationRow) == 0
        assert not slack_api.calls_to("chat.postMessage")  # nothing said in the channel


async def test_forged_and_stale_requests_are_refused(sqlite_url, clock, slack_api):
    async with running(sqlite_url, clock, slack_api) as (parts, adapter):
        body = slash_command_body(text=LOG_OP, user_id=ALICE, channel_id=JOINT,
                                  response_url=slack_api.response_url())
        forged = await apost_signed(adapter.url, body, "not-the-secret")
        stale = await apost_signed(adapter.url, body, SECRET, timestamp=int(time.time()) - 6 * 60)
        unsigned = await apost_signed(adapter.url, body, SECRET, extra_headers={"X-Slack-Signature": None})
        event = await apost_signed(adapter.url, event_body(message_event("!" + "op " + LOG_OP)), "wrong")
        assert [r[0] for r in (forged, stale, unsigned, event)] == [401, 401, 401, 401]
        # A genuine request after them: once it is handled, any of the refused ones that got in would be too.
        await slash(adapter, slack_api, "", command="/watchfloor", trigger="marker", name="marker")
        await settle(adapter, handled=1)
        assert await asyncio.to_thread(count, parts, OperationRow) == 0
        assert await asyncio.to_thread(count, parts, OutboxRow) == 1  # the marker's answer
        # Only what the marker needed: Bolt's check of its token, the sender's name; nothing was said.
        assert {c.method for c in slack_api.calls} == {"auth.test", "users.info"}


# --- `!` commands in channels --------------------------------------------------------------------------------


async def test_bang_message_is_a_command_and_a_retried_event_acts_once(db_url, clock, slack_api):
    seen = []
    async with running(db_url, clock, slack_api, seen) as (parts, adapter):
        body = event_body(message_event("!op " + LOG_OP), event_id="Ev100")
        assert (await apost_signed(adapter.url, body, SECRET))[0] == 200
        await until(lambda: count(parts, OperationRow) == 1, what="the operation")
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        assert (await apost_signed(adapter.url, body, SECRET, extra_headers=retry))[0] == 200
        await settle(adapter, handled=2)
        await deliver(parts, adapter)
        assert await asyncio.to_thread(count, parts, OperationRow) == 1
        [post] = slack_api.calls_to("chat.postMessage")
        assert post.params["channel"] == JOINT and "OP-1 logged" in post.params["text"]
        assert post.params["blocks"][0]["type"] == "section"
        # Both went the one message path every platform uses; the claim on the message made the retry a no-op.
        assert [m.event_id for m in seen] == [f"msg:slack:{JOINT}:1764600000.000100"] * 2

        # A bad `!` command: the reason goes to the sender alone.
        await apost_signed(adapter.url, event_body(message_event("!op log patrol at=95,0", ts="1764600001.000100"),
                                                   event_id="Ev101"), SECRET)
        await settle(adapter, handled=3)
        await deliver(parts, adapter)
        [eph] = slack_api.calls_to("chat.postEphemeral")
        assert eph.params["user"] == ALICE and "latitude" in eph.params["text"]


# --- alert buttons --------------------------------------------------------------------------------------------


async def _raise_conflict(parts, adapter, api) -> None:
    """Two agencies log overlapping operations: an alert with buttons is posted in the watch channel."""
    await slash(adapter, api, LOG_OP, user=ALICE, trigger="a1", name="alice")
    await until(lambda: count(parts, OperationRow) == 1, what="the first operation")
    await slash(adapter, api, OVERLAP, user=BOB, trigger="b1", name="bob")
    await until(lambda: count(parts, ConflictRow) == 1, what="the conflict")
    await settle(adapter)
    await deliver(parts, adapter)
    [alert] = [c for c in api.calls_to("chat.postMessage") if c.params["channel"] == WATCH]
    actions = [b for b in alert.params["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]][:2] == ["ack:CF-1", "resolve:proceed:CF-1"]


async def test_alert_buttons_act_for_supervisors_only(db_url, clock, slack_api):
    async with running(db_url, clock, slack_api) as (parts, adapter):
        await _raise_conflict(parts, adapter, slack_api)

        def alert_ts():
            with parts.db.session() as s:
                return s.exec(select(OutboxRow.remote_id).where(OutboxRow.room == f"slack:{WATCH}",
                                                                OutboxRow.kind == "alert")).one()
        ts = await asyncio.to_thread(alert_ts)
        assert ts

        async def press(action, user, trigger, name):
            body = block_action_body(action_id=action, value="CF-1", user_id=user, channel_id=WATCH,
                                     message_ts=ts, response_url=slack_api.response_url(name), trigger_id=trigger)
            status, _ = await apost_signed(adapter.url, body, SECRET)
            assert status == 200
            await settle(adapter)
            await deliver(parts, adapter)

        def cf_status():
            with parts.db.session() as s:
                return s.get(ConflictRow, 1).status

        await press("ack:CF-1", BOB, "p1", "bob-press")
        [refusal] = slack_api.responses("bob-press")
        assert refusal["response_type"] == "ephemeral" and "supervisor" in refusal["text"].lower()
        assert not slack_api.calls_to("chat.update")
        assert await asyncio.to_thread(cf_status) == "open"

        await press("ack:CF-1", SAM, "p2", "sam-ack")
        [update] = slack_api.calls_to("chat.update")
        assert update.params["channel"] == WATCH and update.params["ts"] == ts
        shown = " ".join(b["text"]["text"] for b in update.params["blocks"] if b["type"] == "section")
        assert "acknowledged" in shown and SAM in shown
        buttons = [e["action_id"] for b in update.params["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert "ack:CF-1" not in buttons and "resolve:joint:CF-1" in buttons
        assert slack_api.responses("sam-ack") == []  # the alert itself shows it; no extra message
        assert await asyncio.to_thread(cf_status) == "acked"

        await press("resolve:joint:CF-1", SAM, "p3", "sam-resolve")
        update = slack_api.calls_to("chat.update")[-1]
        assert update.params["ts"] == ts
        shown = " ".join(b["text"]["text"] for b in update.params["blocks"] if b["type"] == "section")
        assert "resolved: joint" in shown
        assert not [b for b in update.params["blocks"] if b["type"] == "actions"]
        assert await asyncio.to_thread(cf_status) == "resolved"


# --- the bridge side -----------------------------------------------------------------------------------------


async def test_channel_messages_edits_and_deletes_reach_the_bridge(sqlite_url, clock, slack_api):
    got: list[ChatMessage] = []
    slack_api.users[ALICE] = {"real_name": "Alice Jones", "display_name": "alice.j"}
    async with running(sqlite_url, clock, slack_api, got) as (parts, adapter):
        t1, t2 = "1764600000.000100", "1764600005.000200"
        events = [
            message_event("pilot boards 0600", ts=t1),
            message_event("copy that", ts=t2, thread_ts=t1),
            {"type": "message", "subtype": "message_changed", "channel": JOINT, "ts": "1764600009.000300",
             "event_ts": "1764600009.000300", "hidden": True,
             "message": {"type": "message", "user": ALICE, "text": "pilot boards 0630", "ts": t1},
             "previous_message": {"type": "message", "user": ALICE, "text": "pilot boards 0600", "ts": t1}},
            {"type": "message", "subtype": "message_deleted", "channel": JOINT, "deleted_ts": t2,
             "ts": "1764600010.000400", "event_ts": "1764600010.000400", "hidden": True,
             "previous_message": {"type": "message", "user": ALICE, "text": "copy that", "ts": t2}},
            # Not people talking in a joint channel: the bot's own post, a join, another channel.
            {"type": "message", "subtype": "bot_message", "bot_id": BOT_ID, "channel": JOINT, "text": "relay",
             "ts": "1764600011.000500"},
            message_event("hello", channel=OTHER, ts="1764600012.000600"),
            {"type": "message", "subtype": "channel_join", "user": BOB, "channel": JOINT, "text": "joined",
             "ts": "1764600013.000700"},
        ]
        for i, ev in enumerate(events):
            assert (await apost_signed(adapter.url, event_body(ev, event_id=f"Ev{i}"), SECRET))[0] == 200
            await settle(adapter)
        assert adapter.handled == 6  # all but the bot's own post, which Bolt drops before any listener
        new, reply, edit, delete = got
        assert (new.room, new.sender, new.text, new.event_id) == (f"slack:{JOINT}", f"slack:{ALICE}",
                                                                  "pilot boards 0600", t1)
        assert new.sender_name == "alice.j" and new.reply_to is None
        assert reply.reply_to == t1 and reply.text == "copy that"
        assert edit.extra["edit_of"] == t1 and edit.text == "pilot boards 0630"
        assert delete.extra["redacts"] == t2
        assert len(slack_api.calls_to("users.info")) == 1  # the name is cached


async def test_send_relays_edits_and_deletes_in_the_channel(sqlite_url, clock, slack_api):
    async with running(sqlite_url, clock, slack_api) as (parts, adapter):
        room = f"slack:{JOINT}"
        ts = await adapter.send(room, "relay", {"text": "[USCG] Bob: on scene", "html": "", "blocks": []})
        reply = await adapter.send(room, "relay", {"text": "[USCG] Bob: thread"}, reply_to_remote=ts)
        assert ts and reply and reply != ts
        assert slack_api.calls_to("chat.postMessage")[1].params["thread_ts"] == ts
        assert await adapter.send(room, "edit", {"text": "[USCG] Bob: on scene 0700"}, target_id=ts) == ts
        assert slack_api.last("chat.update").params["text"] == "[USCG] Bob: on scene 0700"
        await adapter.send(room, "redact", {}, target_id=reply)
        assert slack_api.last("chat.delete").params["ts"] == reply
        slack_api.fail_next("chat.postMessage", error="channel_not_found")
        with pytest.raises(PermanentSendError):
            await adapter.send("slack:CGONE", "relay", {"text": "x"})
        assert await adapter.healthy()


async def test_rate_limited_post_is_retried_after_retry_after_and_nothing_is_lost(db_url, clock, slack_api):
    async with running(db_url, clock, slack_api) as (parts, adapter):
        slack_api.fail_next("chat.postMessage", n=1, status=429, retry_after=7)
        body = event_body(message_event("!op " + LOG_OP), event_id="Ev1")
        await apost_signed(adapter.url, body, SECRET)
        await until(lambda: count(parts, OperationRow) == 1, what="the operation")
        await settle(adapter)

        assert await deliver(parts, adapter) == 1

        def row():
            with parts.db.session() as s:
                return s.exec(select(OutboxRow).where(OutboxRow.room == f"slack:{JOINT}")).one()
        waiting = await asyncio.to_thread(row)
        assert waiting.status == "pending" and "rate limited" in waiting.last_error
        assert waiting.next_attempt_at == waiting.created_at + timedelta(seconds=7)  # Slack's Retry-After
        assert await deliver(parts, adapter) == 0  # not due before Retry-After has passed
        assert len(slack_api.calls_to("chat.postMessage")) == 1
        clock.advance(seconds=7)
        assert await deliver(parts, adapter) == 1
        calls = slack_api.calls_to("chat.postMessage")
        assert [c.status for c in calls] == [429, 200] and "OP-1 logged" in calls[1].params["text"]
        sent = await asyncio.to_thread(row)
        assert sent.status == "sent" and sent.remote_id
        assert await deliver(parts, adapter) == 0  # and never posted again

        slack_api.down = 503
        with pytest.raises(TransientSendError):
            await adapter.send(f"slack:{JOINT}", "relay", {"text": "x"})
        slack_api.down = True
        with pytest.raises(TransientSendError):
            await adapter.send(f"slack:{JOINT}", "relay", {"text": "x"})
        assert not await adapter.healthy()
        slack_api.down = False
        assert await adapter.healthy()


async def test_briefing_with_image_is_uploaded(sqlite_url, clock, slack_api):
    async with running(sqlite_url, clock, slack_api) as (parts, adapter):
        png = b"\x89PNG\r\n\x1a\n" + b"timeline" * 10
        payload = {"text": "LALB briefing", "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                                                   "text": "*LALB* briefing"}}],
                   "image": {"filename": "lalb-timeline.png", "data_b64": base64.b64encode(png).decode()}}
        slack_api.fail_next("files.completeUploadExternal", status=500)
        with pytest.raises(TransientSendError):
            await adapter.send(f"slack:{JOINT}", "briefing", payload)
        ts = await adapter.send(f"slack:{JOINT}", "briefing", payload)
        assert ts
        assert len(slack_api.calls_to("chat.postMessage")) == 1  # the retry did not post the briefing twice
        done = slack_api.calls_to("files.completeUploadExternal")[-1]
        assert done.params["channel_id"] == JOINT
        assert png in slack_api.uploads.values()


async def test_a_press_in_one_watch_channel_updates_the_alert_in_the_others(sqlite_url, clock, slack_api):
    second = "C0WATCH2"
    settings = slack_settings(slack_api.base_url)
    settings["zone"][0]["watch_rooms"].append(f"slack:{second}")
    async with running(sqlite_url, clock, slack_api, settings=settings) as (parts, adapter):
        await _raise_conflict(parts, adapter, slack_api)
        alerts = {c.params["channel"]: c for c in slack_api.calls_to("chat.postMessage")
                  if c.params["channel"] in (WATCH, second)}
        assert set(alerts) == {WATCH, second}

        def alert_ts(room):
            with parts.db.session() as s:
                return s.exec(select(OutboxRow.remote_id).where(OutboxRow.room == f"slack:{room}",
                                                                OutboxRow.kind == "alert")).one()
        ts_first, ts_second = [await asyncio.to_thread(alert_ts, r) for r in (WATCH, second)]
        body = block_action_body(action_id="resolve:delay:CF-1", value="CF-1", user_id=SAM, channel_id=WATCH,
                                 message_ts=ts_first, response_url=slack_api.response_url("sam"), trigger_id="p9")
        assert (await apost_signed(adapter.url, body, SECRET))[0] == 200
        await settle(adapter)
        await deliver(parts, adapter)
        updates = {c.params["channel"]: c for c in slack_api.calls_to("chat.update")}
        assert updates[WATCH].params["ts"] == ts_first and updates[second].params["ts"] == ts_second
        for update in updates.values():
            assert not [b for b in update.params["blocks"] if b["type"] == "actions"]  # no stale buttons
            assert "resolved: delay" in update.params["blocks"][1]["text"]["text"]
        [notice] = [c for c in slack_api.calls_to("chat.postMessage") if c.params["channel"] == second][1:]
        assert notice.params["thread_ts"] == ts_second and "resolved: delay" in notice.params["text"]


async def test_a_message_is_stored_before_slack_has_its_answer_and_a_channel_keeps_its_order(sqlite_url, clock,
                                                                                             slack_api):
    """Slack sends a request again only when it had no answer: answering before the message is stored would
    lose it to a crash in between. And two messages said a moment apart are relayed in the order they were said,
    even when the first takes longer to hand in (its sender's name is slow to look up)."""
    other = "C0JOINT2"
    settings = slack_settings(slack_api.base_url)
    settings["zone"][0]["joint_rooms"].append(f"slack:{other}")
    async with running(sqlite_url, clock, slack_api, settings=settings) as (parts, adapter):
        status, _ = await apost_signed(adapter.url, event_body(message_event("first light", ts="1764600000.000100"),
                                                               "Ev1"), SECRET)
        assert status == 200
        assert await asyncio.to_thread(count, parts, OutboxRow) == 1  # stored when Slack got its 200

        slack_api.stall_next("users.info", 1.0)  # Bob's name: the first message is slow to hand in

        async def later(body, delay):
            await asyncio.sleep(delay)
            return await apost_signed(adapter.url, body, SECRET)

        await asyncio.gather(
            later(event_body(message_event("one", user=BOB, ts="1764600001.000100"), "Ev2"), 0),
            later(event_body(message_event("two", user=SAM, ts="1764600001.000200"), "Ev3"), 0.2))
        await settle(adapter, handled=3)
        await deliver(parts, adapter)
        said = [c.params["text"].rsplit(" ", 1)[-1] for c in slack_api.calls_to("chat.postMessage")
                if c.params["channel"] == other]
        assert said == ["light", "one", "two"]
