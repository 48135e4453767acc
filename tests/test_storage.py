"""Storage on SQLite and PostgreSQL: migrations, ids never reused, several processes writing, replays."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

from sqlalchemy import inspect, text
from sqlmodel import func, select

from watchfloor.commands.message import ChatMessage
from watchfloor.storage.db import Database
from watchfloor.storage.tables import HandledEventRow, OperationRow, OutboxRow, TargetRow
from tests.helpers import ConsoleUser, make_parts

CLI = [sys.executable, "-m", "watchfloor.bot.cli"]


def cli(*args, input: str = "", timeout: int = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WATCHFLOOR_DB_URL"}
    return subprocess.run([*CLI, *args], input=input, capture_output=True, text=True, timeout=timeout, env=env)


def test_db_upgrade_on_an_empty_database_then_again(db_url):
    first = cli("db", "upgrade", "--db", db_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("database at head")
    again = cli("db", "upgrade", "--db", db_url)
    assert again.returncode == 0, again.stderr
    db = Database(db_url)
    tables = set(inspect(db.engine).get_table_names())
    assert {"operation", "target", "conflict", "outbox", "handled_event", "alembic_version"} <= tables
    with db.engine.connect() as c:
        assert len(c.execute(text("SELECT version_num FROM alembic_version")).all()) == 1
        assert c.execute(text("SELECT count(*) FROM zone")).scalar() == 37
    db.dispose()


def test_ids_are_never_reused_after_a_delete(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    for i in range(3):
        assert alice.say(f"!op log patrol at=33.{i},-118 start=+{i + 1}h").startswith(f"OP-{i + 1} logged")
    alice.say("!target nominate IMO9074729")
    alice.say("!target nominate 366123456")
    with parts.db.session() as s:  # an operator deleting rows by hand must not make old ids come back
        s.exec(text("DELETE FROM operation WHERE id = 3"))
        s.exec(text("DELETE FROM endorsement WHERE target_id = 2"))
        s.exec(text("DELETE FROM target WHERE id = 2"))
    assert alice.say("!op log patrol at=33.9,-118 start=+5h").startswith("OP-4 logged")
    assert alice.say("!target nominate 366999999").startswith("TGT-3 nominated")


def test_a_replayed_message_is_answered_once_and_stored_once(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    msg = ChatMessage(platform="console", room=alice.room.id, sender=alice.sender.id, event_id="evt-42",
                      text="!op log patrol at=33.74,-118.27 start=+1h", sender_name="alice")
    first = parts.engine.handle(msg)
    assert first.rows and not first.duplicate
    assert parts.engine.handle(msg).duplicate
    # the same event id on another platform is another message
    assert not parts.engine.handle(ChatMessage(**{**msg.__dict__, "platform": "slack", "room": alice.room.id})).duplicate
    with parts.db.session() as s:
        assert s.exec(select(func.count()).select_from(OperationRow)).one() == 2
        assert s.exec(select(func.count()).select_from(HandledEventRow)).one() == 2
        replies = s.exec(select(OutboxRow).where(OutboxRow.kind == "reply")).all()
        assert sum('"reply_to": "evt-42"' in r.payload for r in replies) == 2


def test_the_same_message_racing_in_two_threads_is_handled_once(db_url, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    msg = ChatMessage(platform="slack", room=alice.room.id, sender=alice.sender.id, event_id="Ev-race",
                      text="!target nominate IMO9074729 priority=high", sender_name="alice")
    results = []
    barrier = threading.Barrier(4)

    def go():
        barrier.wait()
        results.append(parts.engine.handle(msg))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert all(r.error is None for r in results)
    with parts.db.session() as s:
        assert s.exec(select(func.count()).select_from(TargetRow)).one() == 1


def test_two_processes_logging_at_once_get_unique_ids_and_store_each_op_once(db_url):
    """Both consoles start on an empty database (both upgrade it) and log 25 operations each, interleaved."""
    n = 25
    procs = []
    for who, agency, lat in (("alice", "CBP", 33.0), ("bob", "USCG", 34.0)):
        lines = "".join(f'!op log patrol at={lat + i / 100:.2f},-118 start=+{i + 1}h note="{who}-{i}"\n'
                        for i in range(n))
        env = {**os.environ, "WATCHFLOOR_DB_URL": db_url}
        procs.append(subprocess.Popen([*CLI, "console", "--zone", "LALB", "--user", who, "--agency", agency],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))
        procs[-1].stdin.write(lines)
        procs[-1].stdin.close()
    outs = []
    for p in procs:
        p.wait(240)
        out, err = p.stdout.read(), p.stderr.read()
        assert p.returncode == 0, err
        assert "something went wrong" not in out, out
        outs.append(out)
    db = Database(db_url)
    with db.session() as s:
        rows = s.exec(select(OperationRow)).all()
    db.dispose()
    notes = sorted(r.note for r in rows)
    assert notes == sorted(f"{w}-{i}" for w in ("alice", "bob") for i in range(n))  # each exactly once
    ids = [r.id for r in rows]
    assert len(set(ids)) == 2 * n
    # every reply names the id that was stored for that line
    by_note = {r.note: r.id for r in rows}
    for who, out in zip(("alice", "bob"), outs):
        logged = [line for line in out.splitlines() if " logged: " in line]
        assert len(logged) == n, out
        for i, line in enumerate(logged):
            assert line.startswith(f"OP-{by_note[f'{who}-{i}']} logged"), line
