"""What `SlackAdapter.send` makes of Slack's refusals, answered by the local Web API stand-in: a token Slack no
longer accepts stops Slack as a whole (PlatformAuthError), a message Slack will never take is given up
(PermanentSendError), and Slack's own trouble is tried again later (TransientSendError)."""
from __future__ import annotations

import pytest

from watchfloor.bot.adapter import PermanentSendError, PlatformAuthError, TransientSendError
from tests.test_slack_adapter import JOINT, running

ROOM = f"slack:{JOINT}"


@pytest.mark.parametrize("error", ["invalid_auth", "token_revoked", "account_inactive", "not_authed",
                                   "token_expired"])
async def test_a_refused_token_is_a_platform_auth_error(sqlite_url, clock, slack_api, error):
    async with running(sqlite_url, clock, slack_api) as (_parts, adapter):
        slack_api.fail_next("chat.postMessage", error=error)
        with pytest.raises(PlatformAuthError, match=error):
            await adapter.send(ROOM, "relay", {"text": "on scene"})
        # Not only posts: an edit and an ephemeral answer say the same.
        slack_api.fail_next("chat.update", error=error)
        with pytest.raises(PlatformAuthError):
            await adapter.send(ROOM, "edit", {"text": "on scene 0700"}, target_id="1764600000.000100")
        slack_api.fail_next("chat.postEphemeral", error=error)
        with pytest.raises(PlatformAuthError):
            await adapter.send(ROOM, "reply", {"text": "bad", "ephemeral": True, "user": "slack:UALICE"})


@pytest.mark.parametrize("error", ["channel_not_found", "is_archived", "msg_too_long", "invalid_blocks",
                                   "restricted_action"])
async def test_a_message_slack_will_never_take_is_permanent(sqlite_url, clock, slack_api, error):
    async with running(sqlite_url, clock, slack_api) as (_parts, adapter):
        slack_api.fail_next("chat.postMessage", error=error)
        with pytest.raises(PermanentSendError, match=error):
            await adapter.send(ROOM, "relay", {"text": "on scene"})


async def test_not_in_a_channel_it_cannot_join_is_permanent(sqlite_url, clock, slack_api):
    async with running(sqlite_url, clock, slack_api) as (_parts, adapter):
        slack_api.fail_next("chat.postMessage", error="not_in_channel")
        slack_api.fail_next("conversations.join", error="method_not_supported_for_channel_type")
        with pytest.raises(PermanentSendError, match="method_not_supported"):
            await adapter.send(ROOM, "relay", {"text": "on scene"})
        slack_api.fail_next("chat.postMessage", error="not_in_channel")
        assert await adapter.send(ROOM, "relay", {"text": "on scene"})  # a public channel: joined, then posted
        assert [c.method for c in slack_api.calls[-3:]] == ["chat.postMessage", "conversations.join",
                                                           "chat.postMessage"]


async def test_slack_trouble_is_transient(sqlite_url, clock, slack_api):
    async with running(sqlite_url, clock, slack_api) as (_parts, adapter):
        slack_api.fail_next("chat.postMessage", status=429, retry_after=12)
        with pytest.raises(TransientSendError) as rate_limited:
            await adapter.send(ROOM, "relay", {"text": "on scene"})
        assert rate_limited.value.retry_after == 12
        for status, error in ((500, "internal_error"), (503, "service_unavailable"), (200, "fatal_error")):
            slack_api.fail_next("chat.postMessage", status=status, error=error)
            with pytest.raises(TransientSendError):
                await adapter.send(ROOM, "relay", {"text": "on scene"})


async def test_slack_not_answering_in_time_is_transient(sqlite_url, clock, slack_api):
    async with running(sqlite_url, clock, slack_api) as (_parts, adapter):
        adapter.client.timeout = 0.3
        slack_api.stall_next("chat.postMessage", seconds=3)
        with pytest.raises(TransientSendError, match="unreachable"):
            await adapter.send(ROOM, "relay", {"text": "on scene"})
