"""Smoke tests for the real-Synapse fixtures in tests/fixtures/synapse.py."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from nio import AsyncClient, RoomMessageText, SyncResponse

from tests.fixtures.synapse import SynapseServer

pytestmark = pytest.mark.synapse


def _versions_status(server: SynapseServer) -> int:
    with urllib.request.urlopen(f"{server.base_url}/_matrix/client/versions", timeout=5) as r:
        return r.status


async def test_nio_client_sees_message(synapse: SynapseServer) -> None:
    alice = synapse.make_user("alice")
    bob = synapse.make_user("bob")
    assert alice["user_id"].endswith(":localhost")
    assert alice["access_token"] and alice["device_id"]

    room_id = synapse.create_room(alice["access_token"], name="smoke", invite=[bob["user_id"]])
    assert synapse.join(bob["access_token"], room_id) == room_id
    event_id = synapse.send_text(
        alice["access_token"], room_id, "hello from alice", {"org.watchfloor.tag": "smoke"}
    )

    history = synapse.messages(bob["access_token"], room_id)
    assert history[-1]["event_id"] == event_id
    assert history[-1]["content"]["body"] == "hello from alice"
    assert history[-1]["content"]["org.watchfloor.tag"] == "smoke"
    assert history[0]["type"] == "m.room.create"  # chronological order

    client = AsyncClient(synapse.base_url, bob["user_id"])
    client.access_token = bob["access_token"]
    client.user_id = bob["user_id"]
    client.device_id = bob["device_id"]
    try:
        bodies: list[str] = []
        deadline = time.monotonic() + 30
        while "hello from alice" not in bodies and time.monotonic() < deadline:
            resp = await client.sync(timeout=3000)
            assert isinstance(resp, SyncResponse), resp
            room = resp.rooms.join.get(room_id)
            if room is not None:
                bodies += [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)]
        assert "hello from alice" in bodies
    finally:
        await client.close()

    redaction_id = synapse.redact(alice["access_token"], room_id, event_id, reason="smoke")
    assert redaction_id.startswith("$")
    redacted = next(e for e in synapse.messages(bob["access_token"], room_id) if e["event_id"] == event_id)
    assert redacted["content"] == {}


def test_restart_keeps_data_and_port(synapse_factory) -> None:  # noqa: F811
    server = synapse_factory()
    assert server.running
    user = server.register("carol", "s3cret", admin=True)
    token = user["access_token"]
    room_id = server.create_room(token, name="persist")
    event_id = server.send_text(token, room_id, "before restart")
    port, base_url = server.port, server.base_url

    server.stop()
    server.stop()  # idempotent
    assert not server.running
    with pytest.raises(urllib.error.URLError):
        _versions_status(server)

    server.restart()
    assert server.running
    assert (server.port, server.base_url) == (port, base_url)
    assert _versions_status(server) == 200
    events = server.messages(token, room_id)  # old access token still valid
    assert [e["content"]["body"] for e in events if e["event_id"] == event_id] == [
        "before restart"
    ]
    assert server.login("carol", "s3cret")["user_id"] == "@carol:localhost"
