"""`watchfloor run` as it starts (issue 25): a homeserver nobody answers no longer holds everything else back for
~15 s — the health server, the scheduler and the other platforms start at once and Matrix is tried again in the
background, /healthz saying it is down meanwhile; and the scheduler library's chatter stays out of the INFO log."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, homeserver: str, port: int) -> Path:
    config = tmp_path / "wf.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'wf.db'}"

[service]
port = {port}

[matrix]
homeserver = "{homeserver}"
user_id = "@watchfloor:localhost"
password = "secret"
store_path = "{tmp_path / 'store'}"

[[zone]]
code = "LALB"
joint_rooms = ["matrix:!joint:localhost"]
""")
    return config


def _healthz(port: int) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:  # 503: up, and saying what is down
        return e.code, json.loads(e.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _run_until_healthy(tmp_path: Path, homeserver: str) -> tuple[float, tuple[int, dict], str]:
    """Start `watchfloor run`; return how long it took from starting to connect to the homeserver to running
    (its log's timestamps: the imports before are the machine's speed, not waiting), the first /healthz answer,
    and everything it logged, after a clean SIGTERM."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "watchfloor.bot.cli", "run", "--config",
                             str(_config(tmp_path, homeserver, port))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        t0 = time.monotonic()
        health = None
        while time.monotonic() - t0 < 90 and proc.poll() is None:
            health = _healthz(port)
            if health is not None:
                break
            time.sleep(0.05)
        assert health is not None, "".join(lines)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    events = {}
    for line in lines:
        if line.startswith("{"):
            event = json.loads(line)
            events.setdefault(event["event"].split(" http")[0], datetime.fromisoformat(event["timestamp"]))
    took = (events["watchfloor running (matrix)"] - events["matrix: connecting to"]).total_seconds()
    return took, health, "".join(lines)


def test_run_serves_at_once_while_the_homeserver_refuses_connections(tmp_path):
    took, (status, body), log = _run_until_healthy(tmp_path, f"http://127.0.0.1:{_free_port()}")
    assert took < 1, f"running {took:.1f} s after it began to connect"
    assert status == 503 and body["checks"]["matrix"]["ok"] is False and body["checks"]["database"]["ok"] is True
    assert "still trying in the background" in log
    # APScheduler's "Adding job tentatively" and "Added job" lines are the library's business: DEBUG, not INFO.
    assert "Adding job tentatively" not in log and "Added job" not in log
    assert "setup plugin" not in log                                             # nor Alembic's
    assert "leading: this replica runs the scheduled jobs" in log                # our own INFO lines stay


def test_run_serves_at_once_while_the_homeserver_never_answers(tmp_path):
    """A homeserver that takes the connection and says nothing (hung, or a firewall that swallows packets)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        took, (status, body), _log = _run_until_healthy(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}")
    finally:
        silent.close()
    assert took < 3, f"running {took:.1f} s after it began to connect"
    assert status == 503 and body["checks"]["matrix"]["ok"] is False


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch):
    for key in [k for k in os.environ if k.startswith("WATCHFLOOR_")]:
        monkeypatch.delenv(key)
