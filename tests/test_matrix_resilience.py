"""Nothing lost, nothing twice: a restarted bot catches up on what was said while it was down and answers
each command once; a homeserver outage delays messages, loses none and keeps their order; `watchfloor run`
stops cleanly on SIGTERM."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from watchfloor.commands.message import ChatMessage
from tests.matrix_harness import Bot, bodies, bot_messages, from_bot, history, make_world, say, wait_for

pytestmark = pytest.mark.synapse


async def test_restart_catches_up_and_never_answers_twice(synapse, db_url):
    world = make_world(synapse)
    a, b = world.joint
    await say(synapse, world.alice, a, "!help")  # before the first start: history
    async with Bot(world, db_url):
        await say(synapse, world.alice, a, "!zone")
        await bot_messages(world, world.alice, a)

    # The bot is down; people keep talking.
    zone_cmd = await say(synapse, world.alice, a, "!zone")
    for i in range(8):  # more than a sync's timeline holds (limit 3 below): the bot must page back for them
        await say(synapse, world.alice, a, f"said while the bot was down {i}")
    brief = await say(synapse, world.bob, b, "!op list")

    async with Bot(world, db_url, timeline_limit=3):
        answers = await bot_messages(world, world.alice, a, at_least=2)
        in_b = await bot_messages(world, world.bob, b, at_least=9)
        relayed = [m["content"]["body"] for m in in_b if m["content"]["body"].startswith("[CBP]")]
        assert relayed == [f"[CBP] Alice: said while the bot was down {i}" for i in range(8)]
        assert answers[1]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == zone_cmd

    async with Bot(world, db_url):  # a third start has nothing new to do
        await say(synapse, world.alice, a, "!help zone")
        answers = await bot_messages(world, world.alice, a, at_least=3)
        await asyncio.sleep(0.5)

    in_a = from_bot(await history(synapse, world.alice, a), world.bot_user["user_id"])
    in_b = from_bot(await history(synapse, world.bob, b), world.bot_user["user_id"])
    replied_to = [e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") for e in in_a]
    assert len(in_a) == 3 and len(set(replied_to)) == 3, bodies(in_a)
    assert zone_cmd in replied_to
    assert [e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] for e in in_b
            if "m.relates_to" in e["content"]] == [brief]
    assert len(in_b) == 9


async def test_homeserver_outage_delays_but_loses_nothing_and_keeps_order(synapse_factory, sqlite_url):
    server = synapse_factory()
    world = make_world(server)
    slack_room = "slack:C0JOINT"
    world.settings["zone"][0]["joint_rooms"].append(slack_room)
    a = world.joint[0]
    async with Bot(world, sqlite_url) as bot:
        await say(server, world.alice, a, "!zone")
        await bot_messages(world, world.alice, a)

        await asyncio.to_thread(server.stop)
        # Meanwhile the zone's Slack channel keeps talking: relays into Matrix queue up in the outbox.
        for i in range(15):
            await bot.service.on_message(ChatMessage(
                platform="slack", room=slack_room, sender="slack:U0PAT", text=f"update {i}", event_id=f"17000.{i}",
                sender_name="Pat"))
        await asyncio.sleep(2)  # several failed attempts
        assert bot.service.delivery.stats.retried > 0
        # It comes back strict about rate (M_LIMIT_EXCEEDED with retry_after_ms): the backlog must still all arrive.
        _limit_messages(server, per_second=3, burst=3)
        await asyncio.to_thread(server.start)

        async def all_there():
            got = [b for b in bodies(from_bot(await history(server, world.alice, a), world.bot_user["user_id"]))
                   if b.startswith("Pat:")]
            return got if len(got) >= 15 else None
        got = await wait_for(all_there, timeout=40)
        assert got == [f"Pat: update {i}" for i in range(15)]
        assert any("rate limited" in e for e in bot.service.delivery.stats.last_error.values())

        # The sync loop is back too: commands are answered again.
        await say(server, world.alice, a, "!help")
        await wait_for(lambda: _count(server, world, a, 17), timeout=30)
        await asyncio.sleep(0.5)
    assert len(from_bot(await history(server, world.alice, a), world.bot_user["user_id"])) == 17


def _limit_messages(server, per_second: float, burst: int) -> None:
    config = yaml.safe_load(server.config_path.read_text())
    config["rc_message"] = {"per_second": per_second, "burst_count": burst}
    server.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


async def _count(server, world, room, n):
    return len(from_bot(await history(server, world.alice, room), world.bot_user["user_id"])) >= n


def test_watchfloor_run_serves_matrix_and_stops_on_sigterm(synapse, tmp_path):
    world = make_world(synapse, joint=1)
    room = world.joint[0]
    m = world.settings["matrix"]
    toml = tmp_path / "watchfloor.toml"
    toml.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'wf.db'}"

[matrix]
homeserver = "{m['homeserver']}"
user_id = "{m['user_id']}"
password = "{m['password']}"
store_path = "{tmp_path / 'store'}"

[[zone]]
code = "LALB"
joint_rooms = ["matrix:{room}"]
watch_rooms = ["matrix:{world.watch}"]

[[agency]]
code = "CBP"
members = ["{world.alice.key}"]
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHFLOOR_")}
    # This tree's code, whatever checkout the installed `watchfloor` script was installed from.
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    exe = shutil.which("watchfloor") or sys.exit("watchfloor is not installed (pip install -e .)")
    proc = subprocess.Popen([exe, "run", "--config", str(toml)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        answered = False
        while time.monotonic() < deadline and not answered:
            synapse.send_text(world.alice.token, room, "!zone")
            for _ in range(20):
                time.sleep(0.25)
                if any("LALB" in e["content"].get("body", "")
                       for e in from_bot(synapse.messages(world.alice.token, room), m["user_id"])):
                    answered = True
                    break
            assert proc.poll() is None, proc.stdout.read().decode()
        assert answered, "watchfloor run never answered !zone"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        assert code == 0, proc.stdout.read().decode()
        assert time.monotonic() - t0 < 10
        assert "Traceback" not in proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
