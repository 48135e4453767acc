"""Matrix figures against a local Synapse started here (tests/fixtures/synapse.py):

1. command round trip — a user sends `!zone`, and the time until the user's own sync shows the bot's reply —
   divided by the same round trip to a bare matrix-nio echo bot on the same homeserver (goal <= 1.3x);
2. relaying 500 messages said in one joint room to another: lost, duplicated, order, messages per second
   from the first message sent to the last copy seen (goal >= 50/s), live and from a backlog, each set against
   the floor: what a bare matrix-nio client reaches sending one message after another into one room on the
   same homeserver (an in-order relay cannot beat it). Live, the homeserver stores two events per relayed
   message (the original and its copy) on the same CPUs, so about half the floor is the most a live relay can do.

The homeserver is tuned for speed by default (--homeserver fast: its SQLite on tmpfs, push, user directory and
room stats off; see tests/fixtures/synapse.py); --homeserver test is the configuration the tests use,
--database postgresql puts Synapse on the machine's PostgreSQL.

Run: python bench/bench_matrix.py [--rounds 30] [--relay 500] [--homeserver fast|test] [--database ...]
Prints what it measured, here, once.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nio import AsyncClient, AsyncClientConfig, RoomSendResponse, SyncResponse  # noqa: E402

from watchfloor.bot.delivery import Delivery  # noqa: E402
from watchfloor.bot.matrix.adapter import MatrixAdapter  # noqa: E402
from watchfloor.bot.runner import Service  # noqa: E402
from tests.fixtures.synapse import DATABASES, FAST_CONFIG, SynapseServer  # noqa: E402
from tests.helpers import make_parts  # noqa: E402


READER_PAUSE = 0.1


async def client_for(server: SynapseServer, user: dict) -> AsyncClient:
    c = AsyncClient(server.base_url, user["user_id"], config=AsyncClientConfig(encryption_enabled=False))
    c.access_token, c.user_id, c.device_id = user["access_token"], user["user_id"], user["device_id"]
    resp = await c.sync(timeout=0, sync_filter={"room": {"timeline": {"limit": 1}}})
    assert isinstance(resp, SyncResponse), resp
    return c


async def echo_bot(server: SynapseServer, user: dict, stop: asyncio.Event) -> None:
    """The baseline: the least a nio bot can do — sync, and answer every `!` message with a threaded notice."""
    c = await client_for(server, user)
    try:
        while not stop.is_set():
            resp = await c.sync(timeout=30000, since=c.next_batch)
            if not isinstance(resp, SyncResponse):
                continue
            for room_id, room in resp.rooms.join.items():
                for ev in room.timeline.events:
                    src = ev.source
                    body = (src.get("content") or {}).get("body", "")
                    if src.get("sender") != c.user_id and src.get("type") == "m.room.message" and body.startswith("!"):
                        await c.room_send(room_id, "m.room.message", {
                            "msgtype": "m.notice", "body": f"echo: {body}", "format": "org.matrix.custom.html",
                            "formatted_body": f"<b>echo</b>: {body}",
                            "m.relates_to": {"m.in_reply_to": {"event_id": src["event_id"]}}})
    finally:
        await c.close()


async def round_trip(user: AsyncClient, room: str, text: str) -> float:
    t0 = time.perf_counter()
    sent = await user.room_send(room, "m.room.message", {"msgtype": "m.text", "body": text})
    assert isinstance(sent, RoomSendResponse), sent
    while True:
        resp = await user.sync(timeout=30000, since=user.next_batch)
        if not isinstance(resp, SyncResponse):
            continue
        timeline = resp.rooms.join.get(room)
        for ev in (timeline.timeline.events if timeline else []):
            rel = (ev.source.get("content") or {}).get("m.relates_to") or {}
            if (rel.get("m.in_reply_to") or {}).get("event_id") == sent.event_id:
                return time.perf_counter() - t0


async def main(rounds: int, relay: int, homeserver: str, database: str | None) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("nio").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
    fast = homeserver == "fast"
    database = database or ("sqlite-tmpfs" if fast else "sqlite")
    server = SynapseServer(work / "synapse", database=database, extra_config=FAST_CONFIG if fast else None)
    t = time.perf_counter()
    server.start()
    print(f"synapse up in {time.perf_counter() - t:.1f}s at {server.base_url} (database {database}, "
          f"{'tuned: ' + ', '.join(sorted(FAST_CONFIG)) + ' off' if fast else 'test configuration'})")
    try:
        await run(server, work, rounds, relay)
    finally:
        server.stop()
        server.drop_database()


async def run(server: SynapseServer, work: Path, rounds: int, relay: int) -> None:
    bot_user, echo_user = server.make_user("watchfloor"), server.make_user("echo")
    alice, bob = server.make_user("alice"), server.make_user("bob")
    a = server.create_room(alice["access_token"], name="joint-a", invite=[bot_user["user_id"], bob["user_id"]])
    b = server.create_room(bob["access_token"], name="joint-b", invite=[bot_user["user_id"], alice["user_id"]])
    e = server.create_room(alice["access_token"], name="echo", invite=[echo_user["user_id"]])
    server.join(echo_user["access_token"], e)
    server.join(alice["access_token"], b)
    server.join(bob["access_token"], a)
    settings = {
        "matrix": {"homeserver": server.base_url, "user_id": bot_user["user_id"], "password": bot_user["password"]},
        "zone": [{"code": "LALB", "joint_rooms": [f"matrix:{a}", f"matrix:{b}"]}],
        "agency": [{"code": "CBP", "members": [f"matrix:{alice['user_id']}"]}],
    }
    db_url = f"sqlite:///{work / 'watchfloor.db'}"
    parts, service = await start_bot(db_url, settings)
    stop_echo = asyncio.Event()
    echo_task = asyncio.create_task(echo_bot(server, echo_user, stop_echo))
    user = await client_for(server, alice)
    try:
        await round_trip(user, e, "!warmup")
        await round_trip(user, a, "!zone")
        ours, echo = [], []
        for i in range(rounds):  # interleaved, first one then the other, so drift in load hits both alike
            if i % 2:
                ours.append(await round_trip(user, a, "!zone"))
            echo.append(await round_trip(user, e, f"!ping {i}"))
            if not i % 2:
                ours.append(await round_trip(user, a, "!zone"))
        mo, me = statistics.median(ours), statistics.median(echo)
        print(f"command round trip over {rounds} rounds: watchfloor `!zone` median {mo * 1000:.1f} ms "
              f"(p90 {sorted(ours)[int(rounds * 0.9) - 1] * 1000:.1f}), bare nio echo bot median {me * 1000:.1f} ms "
              f"(p90 {sorted(echo)[int(rounds * 0.9) - 1] * 1000:.1f}) -> ratio {mo / me:.2f}x (goal <= 1.3x)")
        floor = await baseline(server, alice, e, min(relay, 200))
        await relay_run(server, alice, bob, bot_user, a, b, relay, floor=floor)
        # The bot is down while the room talks; on start it pages back and relays the backlog in order.
        await service.stop()
        parts.db.dispose()
        await send_messages(server, alice, a, [f"backlog {i:04d}" for i in range(relay)])
        reader = await client_for(server, bob)  # positioned before the bot starts: it sees every copy
        t0 = time.perf_counter()
        parts, service = await start_bot(db_url, settings)
        await relay_run(server, alice, bob, bot_user, a, b, relay, prefix="backlog", t0=t0, reader=reader,
                        floor=floor)
        await baseline(server, alice, e, min(relay, 200), again=True)
    finally:
        stop_echo.set()
        await user.close()
        await service.stop()
        echo_task.cancel()
        await asyncio.gather(echo_task, return_exceptions=True)
        parts.db.dispose()


async def baseline(server, alice, room, n, again: bool = False) -> float:
    """The floor: what this homeserver, on this machine, takes for one message after another into one room."""
    c = await client_for(server, alice)
    t0 = time.perf_counter()
    for i in range(n):
        resp = await c.room_send(room, "m.room.message", {"msgtype": "m.text", "body": f"baseline {i}"})
        assert isinstance(resp, RoomSendResponse), resp
    elapsed = time.perf_counter() - t0
    rate = n / elapsed
    if again:
        print(f"floor again, after the relays: {rate:.1f} messages/s ({elapsed / n * 1000:.1f} ms each)")
    else:
        print(f"floor: {n} sequential sends into one room by a bare nio client: {rate:.1f} messages/s "
              f"({elapsed / n * 1000:.1f} ms each) — the ceiling for any in-order relay on this homeserver"
              + ("" if rate >= 50 else " (below the 50/s goal: the goal is out of reach here)"))
    await c.close()
    return rate


async def start_bot(db_url: str, settings: dict):
    parts = make_parts(db_url, **settings)
    adapter = MatrixAdapter(parts, parts.settings.matrix)
    service = Service(parts, [adapter], delivery=Delivery(parts, [adapter]))
    await service.start()
    return parts, service


async def send_messages(server, who, room, texts) -> float:
    c = await client_for(server, who)
    t0 = time.perf_counter()
    for text in texts:
        resp = await c.room_send(room, "m.room.message", {"msgtype": "m.text", "body": text})
        assert isinstance(resp, RoomSendResponse), resp
    await c.close()
    return time.perf_counter() - t0


async def relay_run(server, alice, bob, bot_user, a, b, n, prefix: str = "relay", t0: float | None = None,
                    reader: AsyncClient | None = None, floor: float | None = None) -> None:
    """Live (t0 None): the messages are said now and timed from the first send. Backlog: said while the bot
    was down, timed from the bot's start."""
    reader = reader or await client_for(server, bob)
    texts = [f"{prefix} {i:04d}" for i in range(n)]
    seen: list[str] = []
    live = t0 is None
    t0 = time.perf_counter() if live else t0
    wall0 = time.time() - (time.perf_counter() - t0)  # the same instant on the homeserver's clock (same machine)

    async def send_all():
        return await send_messages(server, alice, a, texts) if live else 0.0

    sending = asyncio.create_task(send_all())
    deadline = time.monotonic() + 300
    wanted = {f"[CBP] {alice['user_id'].split(':')[0].lstrip('@')}: {t}" for t in texts}
    last = f"[CBP] {alice['user_id'].split(':')[0].lstrip('@')}: {texts[-1]}"
    # A sync may be cut short (limited) when many messages land between two syncs, so the reader only watches
    # for the last copy; what was lost, doubled or reordered is read from the room's full history afterwards.
    while last not in seen and len(wanted.intersection(seen)) < n and time.monotonic() < deadline:
        resp = await reader.sync(timeout=5000, since=reader.next_batch,
                                 sync_filter={"room": {"timeline": {"limit": 1000}}})
        if isinstance(resp, SyncResponse) and b in resp.rooms.join:
            seen += [ev.source["content"].get("body", "") for ev in resp.rooms.join[b].timeline.events
                     if ev.source.get("sender") == bot_user["user_id"] and ev.source.get("type") == "m.room.message"]
        if last not in seen:
            # Woken by every copy, a long-polling reader costs the homeserver one /sync per message, CPU the
            # relay needs: look ten times a second instead (the end time is then late by up to 0.1 s).
            await asyncio.sleep(READER_PAUSE)
    elapsed = seen_after = time.perf_counter() - t0
    send_time = await sending
    expected = [f"[CBP] {alice['user_id'].split(':')[0].lstrip('@')}: {t}" for t in texts]
    await asyncio.sleep(1)  # a late duplicate would land now
    room = await asyncio.to_thread(server.messages, bob["access_token"], b, min(1000, n + 100))
    copies = [e for e in room if e["sender"] == bot_user["user_id"] and e["type"] == "m.room.message"
              and e["content"].get("body", "") in wanted]
    got = [e["content"]["body"] for e in copies]
    lost = len(set(expected) - set(got))
    if copies:
        # When the homeserver stored the last copy (its clock is ours): the reader's sync may see it later.
        elapsed = copies[-1]["origin_server_ts"] / 1000 - wall0
        stamps = [e["origin_server_ts"] for e in copies]
        gap = max((b_ - a_ for a_, b_ in itertools.pairwise(stamps)), default=0)
    how = (f"{elapsed:.2f}s from the first send to the last copy stored; the sender alone took {send_time:.2f}s"
           if live else f"{elapsed:.2f}s from the bot's start to the last copy stored, said while it was down")
    if copies:
        how += f"; longest pause between two copies {gap} ms; the reader saw the last after {seen_after:.2f}s"
    print(f"relay of {n} messages A -> B ({'live' if live else 'backlog'}): lost {lost}, "
          f"duplicated {len(got) - len(set(got))}, order kept {got == expected}, {n / elapsed:.1f} messages/s "
          f"({how}) (goal >= 50/s)" + (f"; relay / floor = {n / elapsed / floor:.2f}" if floor else "")
          + (f" (live: the homeserver stores 2 events per relayed message, and the relay cannot outrun the sender, "
             f"who reached {n / send_time:.1f}/s meanwhile: relay / sender = {n / elapsed / (n / send_time):.2f})"
             if live and send_time else ""))
    await reader.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--relay", type=int, default=500)
    ap.add_argument("--homeserver", choices=("fast", "test"), default="fast",
                    help="fast: Synapse tuned for speed (default); test: the configuration the tests use")
    ap.add_argument("--database", choices=DATABASES, default=None,
                    help="Synapse's database (default: sqlite-tmpfs when fast, sqlite for test)")
    args = ap.parse_args()
    asyncio.run(main(args.rounds, args.relay, args.homeserver, args.database))
