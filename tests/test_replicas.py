"""Several `watchfloor run` replicas on one PostgreSQL database: each duty held by exactly one of them (read from
each replica's /metrics), taken over within 30 s when its holder is killed or frozen, and a command handled by
one replica answered by the holder of its platform's duty, once.

Each replica has its own Slack bot token against the one Slack stand-in, so a recorded post tells which replica
sent it (the stand-in takes any token)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.slack_api import MockSlackApi, event_body, post_signed

pytestmark = pytest.mark.postgres

SECRET = "test-signing-secret"
JOINT, WATCH = "C0JOINT", "C0WATCH"
ALICE = "UALICE"
SLACK_DUTIES = ("scheduler", "ais", "delivery:slack")
TAKEOVER = 30.0  # the contract's promise


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    """One `watchfloor run` process: by default Slack over HTTP, the AIS feed, the scheduler and /metrics;
    `setup` (TOML) replaces everything after [service]."""

    def __init__(self, tmp_path: Path, name: str, db_url: str, api: MockSlackApi | None, setup: str | None = None):
        self.name = name
        self.token = f"xoxb-{name}"
        self.http, self.slack_port = free_port(), free_port()
        self.config = tmp_path / f"{name}.toml"
        if setup is None:
            setup = (f'[slack]\nbot_token = "{self.token}"\nsigning_secret = "{SECRET}"\n'
                     f'port = {self.slack_port}\nhost = "127.0.0.1"\napi_url = "{api.base_url}"\n'
                     f'[ais]\nlisten = "udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"\n'
                     f'[[zone]]\ncode = "LALB"\njoint_rooms = ["slack:{JOINT}"]\nwatch_rooms = ["slack:{WATCH}"]\n'
                     f'[[agency]]\ncode = "CBP"\nmembers = ["slack:{ALICE}"]\n')
        self.config.write_text(f'[database]\nurl = "{db_url}"\n[service]\nport = {self.http}\n' + setup)
        self.log = tmp_path / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.stopped = False

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.slack_port}/slack/events"

    def start(self) -> Replica:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "watchfloor.bot.cli", "run", "--config",
                                          str(self.config)], stdout=out, stderr=out,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def duties(self) -> dict[str, bool] | None:
        """What /metrics says this replica holds now (None: no answer, e.g. killed or frozen)."""
        if self.proc is None or self.proc.poll() is not None or self.stopped:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=2) as r:
                text = r.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return None
        return {m[1]: float(m[2]) == 1.0
                for m in re.finditer(r'^watchfloor_duty_held\{duty="([^"]+)"\} ([0-9.]+)$', text, re.M)}

    def healthz(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.stopped:
            self.thaw()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def holders(replicas: list[Replica], duty: str) -> list[Replica]:
    return [r for r in replicas if (r.duties() or {}).get(duty)]


def wait_until(check, what: str, timeout: float, replicas: list[Replica] = ()) -> float:
    """Poll `check` (other processes: nothing to wait on but their answers); return the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(0.1)
    logs = "\n".join(f"--- {r.name}\n{r.tail()}" for r in replicas)
    raise AssertionError(f"{what}: not within {timeout:g} s\n{logs}")


def one_holder_each(replicas: list[Replica], duties=SLACK_DUTIES) -> bool:
    """Every live replica answers /metrics and each duty has exactly one holder among them."""
    seen = [r.duties() for r in replicas]
    if any(d is None or not set(duties) <= set(d) for d in seen):
        return False
    return all(sum(d[duty] for d in seen) == 1 for duty in duties)


def hand_over(body: str, live, rng, *, secret: str = SECRET, within: float = 120.0, on_retry=None) -> Replica:
    """Slack's delivery of one signed request: to a live replica (the load balancer's pick of `live()`); unanswered,
    again to another with Slack's retry headers, until one answers 200. Returns the replica that took it."""
    deadline, retry = time.monotonic() + within, 0
    while time.monotonic() < deadline:
        replicas = live()
        if not replicas:
            time.sleep(0.2)
            continue
        to = rng.choice(replicas)
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        try:
            status, _ = post_signed(to.events_url, body, secret, extra_headers=headers, timeout=3)
        except OSError:
            status = 0
        if status == 200:
            return to
        retry += 1
        if on_retry is not None:
            on_retry()
        time.sleep(0.1)
    raise AssertionError(f"no replica took the Slack request in {within:g} s")


def say(replica: Replica, text: str, ts: str) -> None:
    """Alice says `text` in the joint channel; Slack delivers the event to `replica` (the load balancer's pick)."""
    body = event_body({"type": "message", "channel": JOINT, "user": ALICE, "text": text, "ts": ts, "event_ts": ts,
                       "channel_type": "channel"}, event_id=f"Ev{ts.replace('.', '')}")
    status, answer = post_signed(replica.events_url, body, SECRET)
    assert status == 200, answer


def posts(api: MockSlackApi, marker: str) -> list:
    return [c for c in api.calls_to("chat.postMessage") if marker in str(c.params.get("text", ""))]


def log_op(n: int) -> str:
    return f"!op log patrol at=33.7{n:02d},-118.27 start=+2h end=2h"


@pytest.fixture
def api():
    with MockSlackApi() as api:
        yield api


@pytest.fixture
def replicas(tmp_path, pg_url, api):
    started: list[Replica] = []

    def make(n: int) -> list[Replica]:
        for i in range(n):
            started.append(Replica(tmp_path, f"r{len(started)}", pg_url, api).start())
        return started[-n:]

    yield make
    for r in started:
        r.close()


def test_each_duty_has_one_holder_a_command_is_answered_by_it_and_sigkill_hands_over(replicas, api):
    group = replicas(3)
    wait_until(lambda: one_holder_each(group), "one holder per duty", 40, group)

    # A command handed to a replica that does not deliver Slack: the holder is woken (NOTIFY) and posts it once.
    [sender] = holders(group, "delivery:slack")
    other = next(r for r in group if r is not sender)
    assert "delivery:slack" in sender.healthz()["duties"] and "delivery:slack" not in other.healthz()["duties"]
    t0 = time.monotonic()
    say(other, log_op(1), "1764600000.000100")
    wait_until(lambda: posts(api, "OP-1 logged"), "the answer", 10, group)
    latency = time.monotonic() - t0
    [post] = posts(api, "OP-1 logged")
    assert api.calls_to("chat.postMessage")[-1].token == sender.token == post.token
    print(f"command to {other.name}, answered by {sender.name} in {latency * 1000:.0f} ms")

    # The holder of every duty it holds is killed: each is held again, once, within 30 s.
    kept = [d for d in SLACK_DUTIES if (sender.duties() or {}).get(d)]
    sender.kill()
    alive = [r for r in group if r is not sender]
    took = wait_until(lambda: one_holder_each(alive), "takeover after SIGKILL", TAKEOVER, alive)
    print(f"{kept} taken over {took:.1f} s after SIGKILL")

    [new] = holders(alive, "delivery:slack")
    say(alive[0], log_op(2), "1764600001.000100")
    wait_until(lambda: posts(api, "OP-2 logged"), "the answer after the takeover", 10, alive)
    time.sleep(1)  # a second sender, if there were one, would have posted by now
    assert [p.token for p in posts(api, "OP-2 logged")] == [new.token]
    assert len(posts(api, "OP-1 logged")) == 1


def test_a_frozen_holder_is_replaced_and_thawed_it_holds_nothing(replicas, api):
    group = replicas(2)
    wait_until(lambda: one_holder_each(group), "one holder per duty", 40, group)
    [frozen] = holders(group, "delivery:slack")
    [other] = [r for r in group if r is not frozen]
    frozen.freeze()
    t0 = time.monotonic()
    # Said while the holder is frozen: it waits in the outbox until the other replica holds the duty.
    say(other, log_op(1), "1764600000.000100")
    took = wait_until(lambda: one_holder_each([other]), "takeover after SIGSTOP", TAKEOVER, group)
    print(f"taken over {took:.1f} s after SIGSTOP")
    wait_until(lambda: posts(api, "OP-1 logged"), "the answer", 10, group)
    assert [p.token for p in posts(api, "OP-1 logged")] == [other.token]
    assert time.monotonic() - t0 <= TAKEOVER + 10

    frozen.thaw()
    # Thawed, its server session ended long ago: at its first answer it holds nothing, and stays so.
    wait_until(lambda: frozen.duties() is not None, "the thawed replica answers", 10, group)
    assert not any(frozen.duties().values()), frozen.duties()
    wait_until(lambda: one_holder_each(group), "one holder per duty after the thaw", 10, group)
    assert holders(group, "delivery:slack") == [other]
    say(frozen, log_op(2), "1764600001.000100")
    wait_until(lambda: posts(api, "OP-2 logged"), "the answer of a command to the thawed replica", 10, group)
    time.sleep(1)
    assert [p.token for p in posts(api, "OP-2 logged")] == [other.token]
    assert len(posts(api, "OP-1 logged")) == 1


def test_a_holder_cut_off_from_the_database_gives_its_duties_up(tmp_path, pg_url, api):
    """The holder's database connections go through a proxy that is cut: its keep-alive fails, it gives every
    duty up at once (its /metrics says so while it still answers), and the other replica takes them."""
    from tests.fixtures.tcp_proxy import TcpProxy

    proxy = TcpProxy(("127.0.0.1", 5432))
    cut_off = Replica(tmp_path, "cut", proxy.url_for(pg_url), api).start()
    group = [cut_off]
    try:
        wait_until(lambda: one_holder_each(group), "the first replica holds every duty", 40, group)
        group.append(Replica(tmp_path, "other", pg_url, api).start())
        wait_until(lambda: group[1].duties() is not None, "the second replica answers", 40, group)
        proxy.cut()
        took = wait_until(lambda: one_holder_each(group) and holders(group, "delivery:slack") == [group[1]],
                          "takeover after the cut", TAKEOVER, group)
        print(f"taken over {took:.1f} s after the cut")
        assert holders(group, "delivery:slack") == [group[1]]
        assert not any(cut_off.duties().values())
        say(cut_off, log_op(1), "1764600000.000100")  # its database is away: the sender is told to try again
        say(group[1], log_op(2), "1764600001.000100")
        wait_until(lambda: posts(api, "OP-1 logged"), "the answer", 10, group)
        time.sleep(1)
        # Only the command answers (" logged: OP-n"): a briefing posted at a start after 07:00 says "None logged."
        assert [p.token for p in posts(api, " logged: OP-")] == [group[1].token]
    finally:
        for r in group:
            r.close()
        proxy.close()


def test_a_silent_holder_loses_its_lock_to_the_server_and_its_lease_before_that(pg_url, clock):
    """A holder that stops talking (here: its keep-alive slowed to never) is no holder once its lease is out, and
    the server frees the lock after idle_session_timeout, for another replica to take."""
    from watchfloor.storage.session_lock import SessionLock
    from tests.helpers import make_parts

    parts = make_parts(pg_url, clock, zone=[{"code": "LALB"}])
    silent = SessionLock(parts.db, 727_999, "silent", idle_timeout=2.0, ping_seconds=60.0, lease_seconds=1.5)
    other = SessionLock(parts.db, 727_999, "other")
    try:
        assert silent.acquire() and silent.held
        assert not other.acquire()
        time.sleep(1.6)
        assert not silent.held  # the lease ran out: it acts no more, though the server has not yet freed it
        deadline = time.monotonic() + 10
        while not other.acquire():
            assert time.monotonic() < deadline, "the server did not end the silent session"
            time.sleep(0.2)
        assert other.held and not silent.alive()
    finally:
        silent.release()
        other.release()
        parts.db.dispose()


def test_a_commit_that_stored_rows_notifies_each_platform_once_and_a_rollback_nothing(pg_url, clock):
    from watchfloor.bot.duties import OutboxWakeups
    from watchfloor.storage import outbox
    from tests.helpers import make_parts

    parts = make_parts(pg_url, clock, zone=[{"code": "LALB"}])
    got: list[str] = []
    wakeups = OutboxWakeups(parts.db, got.append)
    wakeups.start()
    try:
        assert wakeups.listening.wait(10)
        with pytest.raises(RuntimeError), parts.db.session() as s:
            outbox.enqueue(s, room="slack:C1", kind="notice", payload={"text": "x"}, now=clock())
            raise RuntimeError("rolled back")
        with parts.db.session() as s:
            for room in ("slack:C1", "slack:C2", "matrix:!r:hs"):
                outbox.enqueue(s, room=room, kind="notice", payload={"text": "x"}, now=clock())
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # anything more would have come by now
        assert sorted(got) == ["matrix", "slack"]
    finally:
        wakeups.stop()
        parts.db.dispose()


@pytest.mark.synapse
def test_matrix_duty_moves_with_the_sync_token_and_a_command_is_answered_once(tmp_path, pg_url, synapse):
    from tests.matrix_harness import make_world

    world = make_world(synapse, joint=1)
    room = world.joint[0]
    hs = synapse.base_url
    bot = world.bot_user

    def setup(i: int) -> str:
        # Each replica its own device and store (the contract), one bot account.
        return (f'[matrix]\nhomeserver = "{hs}"\nuser_id = "{bot["user_id"]}"\npassword = "{bot["password"]}"\n'
                f'device_id = "WFREPLICA{i}"\nstore_path = "{tmp_path / f"store{i}"}"\n'
                f'[[zone]]\ncode = "LALB"\njoint_rooms = ["matrix:{room}"]\nwatch_rooms = ["matrix:{world.watch}"]\n'
                f'[[agency]]\ncode = "CBP"\nmembers = ["{world.alice.key}"]\n')

    group = [Replica(tmp_path, f"m{i}", pg_url, None, setup(i)).start() for i in range(2)]
    duties = ("scheduler", "matrix")

    def answers(marker: str) -> list[dict]:
        return [e for e in synapse.messages(world.alice.token, room, 100)
                if e["sender"] == bot["user_id"] and marker in (e["content"].get("body") or "")]

    try:
        wait_until(lambda: one_holder_each(group, duties), "one holder per duty", 40, group)
        [holder] = holders(group, "matrix")
        [other] = [r for r in group if r is not holder]
        assert (other.duties() or {}).get("matrix") is False

        def listening() -> bool:
            # The holder's first sync stored a token (what came before it is history) and it joined the room.
            import psycopg

            with psycopg.connect(pg_url.replace("+psycopg", "")) as conn:
                stored = conn.execute("SELECT 1 FROM kv WHERE key LIKE 'matrix.sync_token:%'").fetchone()
            joined = any(e["type"] == "m.room.member" and e.get("state_key") == bot["user_id"]
                         and e["content"].get("membership") == "join"
                         for e in synapse.messages(world.alice.token, room, 50))
            return bool(stored) and joined

        wait_until(listening, "the holder syncs", 30, group)
        devices = {d["device_id"] for d in synapse.request("GET", "/_matrix/client/v3/devices",
                                                           token=bot["access_token"])["devices"]}
        # Only the holder logged in: the other replica is no device of the bot's yet.
        assert f"WFREPLICA{holder.name[1:]}" in devices and f"WFREPLICA{other.name[1:]}" not in devices
        synapse.send_text(world.alice.token, room, log_op(1))
        wait_until(lambda: answers("OP-1 logged"), "the holder answers", 30, group)

        holder.kill()
        synapse.send_text(world.alice.token, room, log_op(2))  # said while nobody syncs
        took = wait_until(lambda: one_holder_each([other], duties), "takeover after SIGKILL", TAKEOVER, group)
        wait_until(lambda: answers("OP-2 logged"), "the new holder answers what was said meanwhile", 30, group)
        print(f"matrix duty taken over {took:.1f} s after SIGKILL")
        time.sleep(2)  # a second answer, if there were one, would be here by now
        assert len(answers("OP-2 logged")) == 1 and len(answers("OP-1 logged")) == 1
    finally:
        for r in group:
            r.close()
