"""Health, metrics and logs as an operator sees them: over HTTP from a running process, and in its log."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import aiohttp

from watchfloor.bot.web.health import bound_port, start_health
from watchfloor.bot.logs import configure_logging
from tests.helpers import ConsoleUser, make_parts


class Platform:
    """Stands for a chat platform's connection: only whether it answers matters to /healthz."""

    def __init__(self, platform: str, up: bool = True):
        self.platform = platform
        self.up = up

    async def healthy(self) -> bool:
        return self.up


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_healthz_names_each_check_and_turns_503_when_a_platform_is_down(db_url, clock):
    parts = make_parts(db_url, clock)
    matrix = Platform("matrix")
    runner = await start_health(parts, [matrix, Platform("slack")], 0, host="127.0.0.1")
    base = f"http://127.0.0.1:{bound_port(runner)}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                body = await r.json()
                assert r.status == 200
                assert body["status"] == "ok"
                assert {k: v["ok"] for k, v in body["checks"].items()} == {"database": True, "matrix": True,
                                                                            "slack": True}
            matrix.up = False
            async with http.get(f"{base}/healthz") as r:
                body = await r.json()
                assert r.status == 503
                assert body["checks"]["matrix"] == {"ok": False, "error": "unreachable", "ms": body["checks"]
                                                    ["matrix"]["ms"]}
                assert body["checks"]["database"]["ok"] and body["checks"]["slack"]["ok"]
    finally:
        await runner.cleanup()
        parts.db.dispose()


async def test_healthz_is_503_when_the_database_is_unreachable(sqlite_url, clock):
    from watchfloor.storage.db import Database

    parts = make_parts(sqlite_url, clock)
    parts.db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    runner = await start_health(parts, [], 0, host="127.0.0.1")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{bound_port(runner)}/healthz") as r:
                body = await r.json()
        assert r.status == 503
        assert body["checks"]["database"]["ok"] is False
        # /metrics still answers with the counters when the database is down
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{bound_port(runner)}/metrics") as r:
                assert r.status == 200 and "watchfloor_commands_total" in await r.text()
    finally:
        await runner.cleanup()


async def test_metrics_count_commands_alerts_and_read_the_outbox(db_url, clock):
    parts = make_parts(db_url, clock, zone=[{"code": "LALB", "watch_rooms": ["matrix:!watch:localhost"]}])
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    runner = await start_health(parts, [], 0, host="127.0.0.1")
    url = f"http://127.0.0.1:{bound_port(runner)}/metrics"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                before = await r.text()
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            alice.say("!op log boarding vessel=IMO9074729 at=33.74,-118.27 start=2026-12-01T14:00 end=2h")
            bob.say("!op log patrol at=33.741,-118.271 start=2026-12-01T15:00 end=2h")
            bob.say("!op log patrol at=95,0")
            clock.advance(minutes=5)  # the Matrix room has not taken the alert for five minutes
            async with http.get(url) as r:
                after = await r.text()
    finally:
        await runner.cleanup()
        parts.db.dispose()

    def delta(name):
        return _metric(after, name) - _metric(before, name)

    assert delta('watchfloor_commands_total{command="op",outcome="ok"}') == 2
    assert delta('watchfloor_commands_total{command="op",outcome="error"}') == 1
    assert delta('watchfloor_alerts_total{event="raised",kind="overlap"}') == 1
    assert delta('watchfloor_agency_activity_total{agency="USCG",what="command"}') == 2
    # the alert for the Matrix watch room waits in the outbox: no Matrix adapter runs here
    assert _metric(after, "watchfloor_outbox_pending") == 1
    assert _metric(after, "watchfloor_outbox_oldest_age_seconds") == 300


def test_logs_are_json_one_event_per_command_and_never_carry_marked_text(sqlite_url, clock):
    buf = io.StringIO()
    configure_logging(stream=buf)  # not a terminal: JSON lines
    try:
        parts = make_parts(sqlite_url, clock)
        hank = ConsoleUser(parts, "LALB", "hank", "HSI")
        hank.say('!op log surveillance vessel="SEA FALCON" at=33.72,-118.25 start=2026-12-01T16:00 end=2h '
                 'mark=LES note="informant aboard"')
        hank.say("!op list all")
    finally:
        import logging

        for h in [h for h in logging.getLogger().handlers if getattr(h, "_watchfloor", False)]:
            logging.getLogger().removeHandler(h)
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    commands = [e for e in events if e["event"] == "command"]
    assert [(e["command"], e["action"], e["outcome"]) for e in commands] == [("op", "log", "ok"),
                                                                             ("op", "list", "ok")]
    assert commands[0]["marking"] == "LES" and commands[0]["agency"] == "HSI"
    assert "informant" not in buf.getvalue() and "SEA FALCON" not in buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_serves_health_and_metrics_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    config = tmp_path / "wf.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "wf.db"}"\n[service]\nport = {port}\n'
                      '[[zone]]\ncode = "LALB"\n')
    proc = subprocess.Popen([sys.executable, "-m", "watchfloor.bot.cli", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = (r.status, json.loads(r.read()))
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert health is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert health[0] == 200 and health[1]["checks"]["database"]["ok"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert "watchfloor_outbox_pending 0.0" in text
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        assert code == 0, proc.stderr.read()
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_metrics_want_the_bearer_token_when_one_is_set(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, service={"metrics_token": "s3cret-token"})
    runner = await start_health(parts, [], 0)
    base = f"http://127.0.0.1:{bound_port(runner)}"
    try:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Bearer s3cret"},
                            {"Authorization": "Basic s3cret-token"}):
                async with http.get(f"{base}/metrics", headers=headers) as r:
                    assert r.status == 401, headers
                    body = await r.text()
                    assert "watchfloor_" not in body and r.headers["WWW-Authenticate"].startswith("Bearer")
            async with http.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret-token"}) as r:
                assert r.status == 200 and "watchfloor_commands_total" in await r.text()
            async with http.get(f"{base}/healthz") as r:  # orchestrators probe without a token
                assert r.status == 200
    finally:
        await runner.cleanup()
        parts.db.dispose()


async def test_health_server_listens_on_loopback_unless_told(sqlite_url, clock):
    from pathlib import Path

    from watchfloor.config import load_settings

    assert load_settings().service.host == "127.0.0.1"
    parts = make_parts(sqlite_url, clock)
    runner = await start_health(parts, [], 0)
    try:
        assert [a[0] for a in runner.addresses] == ["127.0.0.1"]  # bound to loopback only, not 0.0.0.0
    finally:
        await runner.cleanup()
        parts.db.dispose()
    # The container image is reached from outside it, so it asks for every interface itself.
    dockerfile = (Path(__file__).parent.parent / "Dockerfile").read_text()
    assert "WATCHFLOOR_SERVICE__HOST=0.0.0.0" in dockerfile



def _answers_health(proc: subprocess.Popen, port: int, seconds: float = 60) -> bool:
    """Wait until the process serves /healthz (False if it ended or never answered)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            return True
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    return False


def test_a_config_without_a_database_runs_on_watchfloor_db_in_its_folder(tmp_path):
    """The README's and the container's config may leave `[database]` out: `run` uses ./watchfloor.db, as every
    other command does, and still serves one run per file (before: a traceback, 'got None')."""
    port = _free_port()
    config = tmp_path / "wf.toml"
    config.write_text(f'[service]\nport = {port}\n[[zone]]\ncode = "LALB"\n')
    cmd = [sys.executable, "-m", "watchfloor.bot.cli", "run", "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if k != "WATCHFLOOR_DB_URL"}
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _answers_health(first, port), first.stderr.read() if first.poll() is not None else "no answer"
        assert (tmp_path / "watchfloor.db").exists()
        second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=10) == 0
    finally:
        if first.poll() is None:
            first.kill()


def test_a_second_run_on_one_sqlite_file_exits_2_and_the_first_keeps_running(tmp_path):
    port = _free_port()
    config = tmp_path / "wf.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "wf.db"}"\n[service]\nport = {port}\n'
                      '[[zone]]\ncode = "LALB"\n')
    cmd = [sys.executable, "-m", "watchfloor.bot.cli", "run", "--config", str(config)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _answers_health(first, port), first.stderr.read() if first.poll() is not None else "no answer"
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "PostgreSQL" in lines[0], second.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200  # the first one was not disturbed
        first.kill()  # however it ends, the lock goes with it
        first.wait(timeout=10)
        third = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert _answers_health(third, port), third.stderr.read() if third.poll() is not None else "no answer"
        finally:
            third.send_signal(signal.SIGTERM)
            assert third.wait(timeout=10) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
