"""Proves the Slack test harness (tests/fixtures/slack_api.py) against the real slack_sdk / slack-bolt."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error

import aiohttp
import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fixtures.slack_api import (
    MockSlackApi,
    apost_signed,
    block_action_body,
    event_body,
    post_signed,
    serve_bolt_app,
    sign,
    slash_command_body,
)

SECRET = "test-signing-secret"


# ---------------------------------------------------------------------------
# The mock Web API on its own
# ---------------------------------------------------------------------------


def test_sign_matches_slack_sdk_verifier():
    body = slash_command_body(text="status")
    headers = sign(SECRET, body)
    verifier = SignatureVerifier(SECRET)
    assert headers["X-Slack-Signature"].startswith("v0=")
    assert verifier.is_valid_request(body, headers)
    assert verifier.is_valid_request(body.encode(), headers)
    assert not SignatureVerifier("other-secret").is_valid_request(body, headers)
    old = sign(SECRET, body, timestamp=1_700_000_000)
    assert old["X-Slack-Request-Timestamp"] == "1700000000"
    assert not verifier.is_valid_request(body, old)


def test_context_manager_and_sync_client():
    with MockSlackApi() as api:
        client = api.client(token="xoxb-sync")
        assert client.auth_test()["user_id"] == "UBOT"
        r1 = client.chat_postMessage(channel="C1", text="one", blocks=[{"type": "divider"}])
        r2 = client.chat_postMessage(channel="C1", text="two")
        assert r1["ok"] and r1["channel"] == "C1" and r1["message"]["text"] == "one"
        assert float(r2["ts"]) > float(r1["ts"])
        call = api.last("chat.postMessage")
        assert call.token == "xoxb-sync"
        assert call.headers["authorization"] == "Bearer xoxb-sync"
        assert api.calls_to("chat.postMessage")[0].params["blocks"] == [{"type": "divider"}]
        assert [c.method for c in api.calls] == ["auth.test", "chat.postMessage", "chat.postMessage"]
        port = api.port
    # stopped: nothing listens any more
    with pytest.raises(urllib.error.URLError):
        post_signed(f"http://127.0.0.1:{port}/api/auth.test", "", SECRET, timeout=2)


def test_methods_and_state(slack_api: MockSlackApi):
    client = slack_api.client()
    slack_api.users["U1"] = {"real_name": "Alice Smith"}
    slack_api.users["U2"] = {"real_name": "Bob Jones", "display_name": "bob"}
    slack_api.users["UGONE"] = None
    u1 = client.users_info(user="U1")["user"]
    assert u1["real_name"] == "Alice Smith" and u1["profile"]["display_name"] == "Alice Smith"
    assert client.users_info(user="U2")["user"]["profile"]["display_name"] == "bob"
    assert client.users_info(user="U9")["user"]["real_name"] == "User U9"
    with pytest.raises(SlackApiError) as ei:
        client.users_info(user="UGONE")
    assert ei.value.response["error"] == "user_not_found"

    slack_api.channels["C2"] = {"name": "watch"}
    assert client.conversations_info(channel="C2")["channel"] == {
        "id": "C2", "name": "watch", "is_channel": True, "is_private": False, "is_member": True,
    }
    assert client.conversations_join(channel="C1")["ok"]
    assert client.chat_postEphemeral(channel="C1", user="U1", text="psst")["message_ts"]
    upd = client.chat_update(channel="C1", ts="1700000000.000100", text="edited")
    assert upd["ts"] == "1700000000.000100" and upd["channel"] == "C1"
    assert client.chat_delete(channel="C1", ts="1700000000.000100")["ok"]
    assert client.api_call("reactions.add", json={"channel": "C1", "name": "eyes"})["ok"]
    assert slack_api.last("reactions.add").params["name"] == "eyes"

    up = client.files_upload_v2(channel="C1", content=b"a,b\n1,2\n", filename="r.csv", title="Report")
    assert up["file"]["title"] == "Report" and up["file"]["size"] == 8
    (file_id,) = slack_api.uploads
    assert slack_api.uploads[file_id] == b"a,b\n1,2\n"
    assert slack_api.last("files.completeUploadExternal").params["files"][0]["id"] == file_id
    assert slack_api.last("upload").path == f"/upload/{file_id}"

    slack_api.reset()
    assert slack_api.calls == [] and slack_api.uploads == {} and slack_api.users == {}


async def test_async_client_files_upload_v2(slack_api: MockSlackApi):
    client = slack_api.async_client()
    r = await client.files_upload_v2(channel="C1", content="hello", filename="a.txt", title="A", initial_comment="hi")
    assert r["file"]["size"] == 5
    assert list(slack_api.uploads.values()) == [b"hello"]
    assert slack_api.last("files.completeUploadExternal").params["initial_comment"] == "hi"
    # Shared in the channel, the file shows there as a message of the uploader's, as Slack lists it.
    [share] = (await client.conversations_history(channel="C1"))["messages"]
    assert share["text"] == "hi" and [(f["id"], f["name"], f["title"]) for f in share["files"]] == [
        (r["file"]["id"], "a.txt", "A")]


async def test_fail_next_variants(slack_api: MockSlackApi):
    client = slack_api.async_client()

    slack_api.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as ei:
        await client.chat_postMessage(channel="C1", text="x")
    assert ei.value.response.status_code == 429
    assert ei.value.response.headers["Retry-After"] == "7"
    assert ei.value.response["error"] == "ratelimited"
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]  # n=1 consumed

    slack_api.fail_next("chat.postMessage", 2, error="channel_not_found")
    for _ in range(2):
        with pytest.raises(SlackApiError) as ei:
            await client.chat_postMessage(channel="C404", text="x")
        assert ei.value.response.status_code == 200
        assert ei.value.response["error"] == "channel_not_found"
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]

    slack_api.fail_next("chat.update", status=500)
    with pytest.raises(SlackApiError) as ei:
        await client.chat_update(channel="C1", ts="1.1", text="x")
    assert ei.value.response.status_code == 500

    # failed attempts are recorded too, with the status the mock answered
    assert [c.status for c in slack_api.calls_to("chat.postMessage")] == [429, 200, 200, 200, 200]


async def test_rate_limit_retry_handler_honours_retry_after(slack_api: MockSlackApi):
    client = slack_api.async_client(retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    slack_api.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]
    assert time.monotonic() - started >= 1
    calls = slack_api.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].time - calls[0].time >= 1


async def test_down_refuses_connections_then_recovers(slack_api: MockSlackApi):
    client = slack_api.async_client(retry_handlers=[])
    base_url = slack_api.base_url
    slack_api.down = True
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.auth_test()
    with pytest.raises(urllib.error.URLError):  # sync clients see a refused connection too
        slack_api.client(retry_handlers=[]).auth_test()
    assert slack_api.calls == []
    slack_api.down = False
    assert slack_api.base_url == base_url  # same port after recovery
    assert (await client.auth_test())["ok"]

    slack_api.down = 503
    with pytest.raises(SlackApiError) as ei:
        await client.chat_postMessage(channel="C1", text="x")
    assert ei.value.response.status_code == 503
    slack_api.down = False
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]


def test_wait_for_polls_and_times_out(slack_api: MockSlackApi):
    client = slack_api.client()

    def later():
        time.sleep(0.2)
        client.chat_postMessage(channel="C1", text="late")

    threading.Thread(target=later).start()
    calls = slack_api.wait_for("chat.postMessage", timeout=5)
    assert calls[0].params["text"] == "late"
    with pytest.raises(AssertionError, match="chat.delete"):
        slack_api.wait_for("chat.delete", timeout=0.1)


# ---------------------------------------------------------------------------
# A real Bolt AsyncApp served over HTTP, talking to the mock
# ---------------------------------------------------------------------------


@pytest.fixture
async def bolt(slack_api: MockSlackApi):
    app = AsyncApp(
        signing_secret=SECRET,
        client=AsyncWebClient(token="xoxb-test", base_url=slack_api.base_url),
    )
    state: dict[str, list] = {"errors": [], "mentions": []}

    @app.command("/op")
    async def op(ack, command, client, respond):
        await ack()
        if command["text"] == "respond":
            await respond(text="via response_url", response_type="ephemeral")
            return
        try:
            await client.chat_postMessage(channel=command["channel_id"], text=f"op {command['text']}")
        except SlackApiError as e:
            state["errors"].append(e)

    @app.event("app_mention")
    async def mention(event, request):
        state["mentions"].append((event["ts"], request.headers.get("x-slack-retry-num", [None])[0]))

    @app.action("approve")
    async def approve(ack, body, client):
        await ack()
        await client.chat_update(
            channel=body["container"]["channel_id"], ts=body["container"]["message_ts"], text="approved"
        )

    async with serve_bolt_app(app) as url:
        yield url, state


async def test_signed_slash_command_posts_message(slack_api: MockSlackApi, bolt):
    url, _ = bolt
    status, text = await apost_signed(url, slash_command_body(text="list"), SECRET)
    assert (status, text) == (200, "")
    (call,) = await slack_api.async_wait_for("chat.postMessage")
    assert call.params["channel"] == "C1" and call.params["text"] == "op list"
    assert call.token == "xoxb-test"
    # Bolt verifies its token lazily with auth.test on the first request
    assert slack_api.calls[0].method == "auth.test"


async def test_sync_post_signed_works_from_a_thread(slack_api: MockSlackApi, bolt):
    url, _ = bolt
    status, _ = await asyncio.to_thread(post_signed, url, slash_command_body(text="sync"), SECRET)
    assert status == 200
    (call,) = await slack_api.async_wait_for("chat.postMessage")
    assert call.params["text"] == "op sync"


async def test_forged_signature_is_rejected(slack_api: MockSlackApi, bolt):
    url, _ = bolt
    body = slash_command_body()
    forged = {"X-Slack-Signature": sign("wrong-secret", body)["X-Slack-Signature"]}
    status, text = await apost_signed(url, body, SECRET, extra_headers=forged)
    assert status == 401
    assert json.loads(text) == {"error": "invalid request"}
    # no signature headers at all
    unsigned = {"X-Slack-Signature": None, "X-Slack-Request-Timestamp": None}
    status, _ = await apost_signed(url, body, SECRET, extra_headers=unsigned)
    assert status == 401
    # Bolt quirk: a non-numeric timestamp makes SignatureVerifier raise ValueError,
    # which Bolt turns into a 500 (not a 401)
    status, _ = await apost_signed(url, body, SECRET, extra_headers={"X-Slack-Request-Timestamp": "soon"})
    assert status == 500
    await _only_the_marker_got_through(url, slack_api)  # rejected before auth.test or any listener


async def test_stale_timestamp_is_rejected(slack_api: MockSlackApi, bolt):
    url, _ = bolt
    status, _ = await apost_signed(url, slash_command_body(), SECRET, timestamp=int(time.time()) - 6 * 60)
    assert status == 401
    await _only_the_marker_got_through(url, slack_api)


async def _only_the_marker_got_through(url: str, slack_api: MockSlackApi) -> None:
    """A genuine request after the refused ones: once its post is recorded, anything a refused request had
    started would be recorded too. Only the marker's calls may be there."""
    assert (await apost_signed(url, slash_command_body(text="marker"), SECRET))[0] == 200
    await slack_api.async_wait_for("chat.postMessage")
    assert [c.method for c in slack_api.calls] == ["auth.test", "chat.postMessage"]
    assert slack_api.last("chat.postMessage").params["text"] == "op marker"


async def test_rate_limited_post_message_surfaces_as_slack_api_error(slack_api: MockSlackApi, bolt):
    url, state = bolt
    slack_api.fail_next("chat.postMessage", status=429, retry_after=1)
    status, _ = await apost_signed(url, slash_command_body(text="busy"), SECRET)
    assert status == 200  # the ack went out before the API call
    await slack_api.async_wait_for("chat.postMessage")
    for _ in range(200):
        if state["errors"]:
            break
        await asyncio.sleep(0.01)
    (err,) = state["errors"]
    assert err.response.status_code == 429
    assert err.response.headers["Retry-After"] == "1"
    assert len(slack_api.calls_to("chat.postMessage")) == 1  # no retry handler => no retry


async def test_respond_posts_to_response_url(slack_api: MockSlackApi, bolt):
    url, _ = bolt
    body = slash_command_body(text="respond", response_url=slack_api.response_url("cmd1"))
    status, _ = await apost_signed(url, body, SECRET)
    assert status == 200
    (call,) = await slack_api.async_wait_for("response_url")
    assert call.path == "/response/cmd1"
    assert call.json["text"] == "via response_url"
    assert slack_api.responses("cmd1") == [call.json]
    assert slack_api.responses("other") == []
    assert slack_api.calls_to("chat.postMessage") == []


async def test_block_action(slack_api: MockSlackApi, bolt):
    url, _ = bolt
    body = block_action_body(action_id="approve", value="42", message_ts="1700000000.000500")
    status, _ = await apost_signed(url, body, SECRET)
    assert status == 200
    (call,) = await slack_api.async_wait_for("chat.update")
    assert call.params["ts"] == "1700000000.000500" and call.params["text"] == "approved"


async def test_bolt_does_not_dedupe_slack_retries(slack_api: MockSlackApi, bolt):
    """Bolt's HTTP mode ignores X-Slack-Retry-Num: a retried event runs the listener again."""
    url, state = bolt
    body = event_body({"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "ts": "1.2", "channel": "C1"})
    assert (await apost_signed(url, body, SECRET))[0] == 200
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert (await apost_signed(url, body, SECRET, extra_headers=retry))[0] == 200
    for _ in range(200):
        if len(state["mentions"]) == 2:
            break
        await asyncio.sleep(0.01)
    assert sorted(state["mentions"], key=str) == sorted([("1.2", None), ("1.2", "1")], key=str)
