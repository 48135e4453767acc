"""Nothing lost, nothing twice: a restarted bot catches up on what was said while it was down and answers
each command once (its stored sync token, also once handled messages are forgotten), also when it was killed
between answering and storing that token (the handled-event claim); a homeserver outage delays messages, loses
none and keeps their order; `watchfloor run` stops cleanly on SIGTERM."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml
from sqlalchemy import delete

from watchfloor.commands.message import ChatMessage
from watchfloor.storage.db import Database
from watchfloor.storage.tables import HandledEventRow
from tests.matrix_harness import Bot, bodies, bot_messages, from_bot, history, make_world, say, wait_for

pytestmark = pytest.mark.synapse


def _forget_claims(db_url: str) -> None:
    """What the retention job does in time (storage.events.prune): handled messages are forgotten. From then on
    only the stored sync token keeps a restarted bot from answering history again."""
    db = Database(db_url)
    try:
        with db.session() as s:
            s.exec(delete(HandledEventRow))
    finally:
        db.dispose()


def _replies_to(events, event_id):
    return [e for e in events
            if (e["content"].get("m.relates_to") or {}).get("m.in_reply_to", {}).get("event_id") == event_id]


async def test_restart_catches_up_and_never_answers_twice(synapse, db_url):
    world = make_world(synapse)
    a, b = world.joint
    bot_id = world.bot_user["user_id"]
    await say(synapse, world.alice, a, "!help")  # before the first start: history
    async with Bot(world, db_url):
        await say(synapse, world.alice, a, "!zone")
        await bot_messages(world, world.alice, a)
    await asyncio.to_thread(_forget_claims, db_url)

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
    await asyncio.to_thread(_forget_claims, db_url)

    async with Bot(world, db_url):  # a third start has nothing old to do: only what is said now is answered
        last_a = await say(synapse, world.alice, a, "!help zone")
        await say(synapse, world.alice, a, "back to work")
        last_b = await say(synapse, world.bob, b, "!help")

        # Anything replayed would come before these in its room (each room's timeline and posts keep order).
        async def settled():
            in_a = from_bot(await history(synapse, world.alice, a), bot_id)
            in_b = from_bot(await history(synapse, world.bob, b), bot_id)
            done = (_replies_to(in_a, last_a) and _replies_to(in_b, last_b)
                    and "[CBP] Alice: back to work" in bodies(in_b))
            return (in_a, in_b) if done else None
        in_a, in_b = await wait_for(settled)

    replied_to = [e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") for e in in_a]
    assert len(in_a) == 3 and len(set(replied_to)) == 3, bodies(in_a)
    assert zone_cmd in replied_to
    assert [e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] for e in in_b
            if "m.relates_to" in e["content"]] == [brief, last_b]
    assert len(in_b) == 11, bodies(in_b)


def test_killed_after_answering_and_before_storing_its_sync_token_answers_nothing_twice(synapse, pg_url, tmp_path):
    """`watchfloor run` SIGKILLed after it answered a command and before it stored the sync token of that batch:
    restarted, the homeserver gives it the batch again, and the handled-event claim keeps it from answering twice.

    To stop it in exactly that window, the test holds a row lock on the stored token: the bot handles the batch
    and sends its answer, then waits on the lock to store its token — and is killed there."""
    world = make_world(synapse, joint=1)
    room = world.joint[0]
    bot_id = world.bot_user["user_id"]
    toml = _config(world, tmp_path, pg_url)
    plain_url = pg_url.replace("+psycopg", "")
    proc = _start_run(toml, tmp_path)
    try:
        _until_answered(synapse, world, room, "!help", proc)  # up, synced, its token stored

        with psycopg.connect(plain_url) as lock, psycopg.connect(plain_url, autocommit=True) as look:
            assert lock.execute("SELECT key FROM kv WHERE key LIKE 'matrix.sync_token:%' FOR UPDATE").fetchall()
            command = synapse.send_text(world.alice.token, room, "!zone")

            def killable():
                answered = _replies_to(from_bot(synapse.messages(world.alice.token, room), bot_id), command)
                pending = look.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
                storing = look.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query ILIKE '%UPDATE kv%'").fetchone()[0]
                return answered and pending == 0 and storing
            _poll(killable, proc, "the bot never answered and then waited to store its token")
            proc.kill()
            proc.wait(timeout=10)
            lock.rollback()

        proc = _start_run(toml, tmp_path)
        _until_answered(synapse, world, room, "!help zone", proc)  # after the batch given again: its answer follows
        answers = _replies_to(from_bot(synapse.messages(world.alice.token, room), bot_id), command)
        assert len(answers) == 1, bodies(answers)
        assert "LALB" in answers[0]["content"]["body"]
    finally:
        _stop(proc)


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
        stats = bot.service.delivery.stats

        async def several_failed_attempts():
            return stats.retried >= 3
        await wait_for(several_failed_attempts, timeout=30)
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
        helped = await say(server, world.alice, a, "!help")

        async def answered():  # posted after every relay queued before it (a room's posts keep their order)
            return _replies_to(from_bot(await history(server, world.alice, a), world.bot_user["user_id"]), helped)
        await wait_for(answered, timeout=30)
    assert len(from_bot(await history(server, world.alice, a), world.bot_user["user_id"])) == 17


def _limit_messages(server, per_second: float, burst: int) -> None:
    config = yaml.safe_load(server.config_path.read_text())
    config["rc_message"] = {"per_second": per_second, "burst_count": burst}
    server.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_watchfloor_run_serves_matrix_and_stops_on_sigterm(synapse, tmp_path):
    world = make_world(synapse, joint=1)
    room = world.joint[0]
    proc = _start_run(_config(world, tmp_path, f"sqlite:///{tmp_path / 'wf.db'}"), tmp_path)
    try:
        _until_answered(synapse, world, room, "!zone", proc, expect="LALB")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        assert code == 0, proc.stdout.read().decode()
        assert time.monotonic() - t0 < 10
        assert "Traceback" not in proc.stdout.read().decode()
    finally:
        _stop(proc)


def _config(world, tmp_path: Path, db_url: str) -> Path:
    m = world.settings["matrix"]
    toml = tmp_path / "watchfloor.toml"
    toml.write_text(f"""
[database]
url = "{db_url}"

[matrix]
homeserver = "{m['homeserver']}"
user_id = "{m['user_id']}"
password = "{m['password']}"
device_id = "WFRUN"
store_path = "{tmp_path / 'store'}"

[[zone]]
code = "LALB"
joint_rooms = [{", ".join(f'"matrix:{r}"' for r in world.joint)}]
watch_rooms = ["matrix:{world.watch}"]

[[agency]]
code = "CBP"
members = ["{world.alice.key}"]
""")
    return toml


def _start_run(toml: Path, tmp_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHFLOOR_")}
    # This tree's code, whatever checkout the installed `watchfloor` script was installed from.
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    exe = shutil.which("watchfloor") or sys.exit("watchfloor is not installed (pip install -e .)")
    return subprocess.Popen([exe, "run", "--config", str(toml)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _poll(check, proc: subprocess.Popen, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


def _until_answered(synapse, world, room: str, text: str, proc: subprocess.Popen, expect: str = "") -> None:
    """Say `text` until the bot answers it: what is said before its first sync is history, never answered."""
    deadline = time.monotonic() + 60
    bot_id = world.bot_user["user_id"]
    while time.monotonic() < deadline:
        said = synapse.send_text(world.alice.token, room, text)
        for _ in range(25):
            answers = _replies_to(from_bot(synapse.messages(world.alice.token, room), bot_id), said)
            if answers:
                assert expect in answers[0]["content"]["body"]
                return
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.2)
    raise AssertionError(f"watchfloor run never answered {text}")
