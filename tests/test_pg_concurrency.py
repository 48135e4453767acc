"""Commands racing each other on PostgreSQL: two bot processes (each its own Engine and connection pool) on one
database, their commands started together.

Races are forced where they matter: a hook on the SQLAlchemy engine stops each side right after its first lock
until the other side has taken its own first lock or is waiting for one, so the interleaving that used to
deadlock (or to hide a conflict) happens every round instead of now and then.
"""
from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest
from sqlalchemy import event, text
from sqlmodel import select

from watchfloor.commands.jobs import escalate_due, scan_all
from watchfloor.storage import audit as audit_chain
from watchfloor.storage import locks
from watchfloor.storage.tables import AuditRow, ConflictRow, OperationRow, OutboxRow
from tests.helpers import ConsoleUser, make_parts

ROUNDS = 30
SETTINGS = dict(zone=[{"code": "LALB", "watch_rooms": ["matrix:!watch:localhost"]}])


def _plain(url: str) -> str:
    return url.replace("+psycopg", "")


class Rendezvous:
    """Two transactions meet between their first lock and their second.

    Each side, at its point, waits until the other side reached its own point or is waiting for a lock (then
    the first side holds something the other needs, and waiting longer would only hang). The backend of each
    side is learnt from its statements, so the check asks PostgreSQL what exactly that backend is doing.
    """

    def __init__(self, url: str):
        self.arrived = {0: threading.Event(), 1: threading.Event()}
        self.pid: dict[int, int] = {}
        self._admin = psycopg.connect(_plain(url), autocommit=True)
        self._admin_lock = threading.Lock()

    def close(self) -> None:
        self._admin.close()

    def _waiting_for_a_lock(self, side: int) -> bool:
        pid = self.pid.get(side)
        if pid is None:
            return False
        with self._admin_lock:
            row = self._admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        return row is not None and row[0] == "Lock"

    def arrive(self, side: int) -> None:
        self.arrived[side].set()
        other = 1 - side
        deadline = time.monotonic() + 20
        while not self.arrived[other].wait(0.002):
            if self._waiting_for_a_lock(other):
                return
            assert time.monotonic() < deadline, "the other side never reached its first lock"


def meet_after(parts, side: int, rendezvous: list, first_lock) -> None:
    """Stop this engine's transaction at the rendezvous of the current round, once, after `first_lock`."""

    def before(_conn, cursor, statement, parameters, _context, _many):
        r = rendezvous[0]
        if r is not None:
            r.pid[side] = cursor.connection.info.backend_pid

    def after(_conn, _cursor, statement, parameters, _context, _many):
        r = rendezvous[0]
        if r is not None and not r.arrived[side].is_set() and first_lock(statement, parameters):
            r.arrive(side)

    event.listen(parts.db.engine, "before_cursor_execute", before)
    event.listen(parts.db.engine, "after_cursor_execute", after)


def audit_lock(statement: str, parameters) -> bool:
    return "pg_advisory_xact_lock" in statement and isinstance(parameters, dict) and \
        parameters.get("k") == locks.AUDIT_CHAIN


def conflict_row_lock(statement: str, _parameters) -> bool:
    return "FROM conflict" in statement and "FOR UPDATE" in statement and "conflict.id =" in statement


def operation_insert(statement: str, _parameters) -> bool:
    return statement.lstrip().startswith("INSERT INTO operation")


def together(*calls):
    """Run the calls in threads started at one barrier; return their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def run(i, call):
        try:
            barrier.wait(10)
            results[i] = call()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a command hung"
    return results


def _troubles(caplog) -> list[str]:
    """Deadlocks, retries and crashes logged: none may happen when every transaction takes its locks in order."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.ERROR or "aborted by the database" in r.getMessage()]


@pytest.fixture
def two_bots(pg_url, clock):
    first = make_parts(pg_url, clock, **SETTINGS)
    second = make_parts(pg_url, clock, **SETTINGS)
    yield first, second
    first.db.dispose()
    second.db.dispose()


def _clash(alice, bob, i: int) -> tuple[int, int, int]:
    """CBP and USCG at the same berth in round i's own time slot: a new conflict. Returns (op a, op b, cf)."""
    where = f"at=33.74,-118.27 start=+{1 + 3 * i}h end=2h"
    a = alice.say(f"!op log boarding {where}")
    b = bob.say(f"!op log patrol {where}")
    op_a = int(a.split("OP-")[1].split()[0])
    op_b = int(b.split("OP-")[1].split()[0])
    cf = int(b.split("CF-")[1].split()[0].rstrip(".,"))
    return op_a, op_b, cf


def test_a_supervisor_acking_while_the_agency_changes_its_operation_never_deadlocks(two_bots, pg_url, caplog):
    """The supervisor locks the conflict and then writes the audit record; the agency writes its audit record and
    then locks the same conflict. Stopped between the two locks, both sides used to wait for each other."""
    first, second = two_bots
    alice = ConsoleUser(first, "LALB", "alice", "CBP")
    sam = ConsoleUser(first, "LALB", "sam", "CBP", "supervisor")
    bob = ConsoleUser(second, "LALB", "bob", "USCG")
    rendezvous: list = [None]
    meet_after(first, 0, rendezvous, conflict_row_lock)
    meet_after(second, 1, rendezvous, audit_lock)
    caplog.set_level(logging.WARNING)
    answers = []
    for i in range(ROUNDS // 3):
        for j, (supervisor, agency, done) in enumerate([
            ("ack", "update", "updated"), ("ack", "cancel", "cancelled"), ("resolve", "cancel", "cancelled")]):
            _, op_b, cf = _clash(alice, bob, 3 * i + j)
            sup = f"!conflicts ack CF-{cf}" if supervisor == "ack" else f"!conflicts resolve CF-{cf} joint"
            mine = f'!op update OP-{op_b} note="round {i}"' if agency == "update" else f"!op cancel OP-{op_b}"
            rendezvous[0] = Rendezvous(pg_url)
            try:
                sup_reply, agency_reply = together(lambda: sam.say(sup), lambda: bob.say(mine))
                assert all(e.is_set() for e in rendezvous[0].arrived.values())   # both sides were stopped
            finally:
                rendezvous[0].close()
                rendezvous[0] = None
            answers.append((sup, sup_reply, mine, agency_reply))
            assert f"OP-{op_b} {done}" in agency_reply, answers[-1]
            # Whichever went first, the supervisor gets a real answer: done, or closed by the cancel just before.
            assert (f"CF-{cf} acknowledged" in sup_reply or f"CF-{cf} resolved: joint" in sup_reply
                    or f"CF-{cf} is already closed (OP-{op_b} was cancelled)" in sup_reply), answers[-1]
    assert not any("went wrong" in a for round_ in answers for a in round_)
    assert _troubles(caplog) == []
    with first.db.session() as s:
        assert audit_chain.verify(s)[1] is None


def test_a_deadlock_is_retried_invisibly(two_bots, pg_url, caplog):
    """A real deadlock: another session holds the audit lock while the cancel holds its operation's row, then
    asks for that row. PostgreSQL aborts the cancel (its deadlock check runs first); the bot runs it again."""
    first, _ = two_bots
    alice = ConsoleUser(first, "LALB", "alice", "CBP")
    assert "OP-1 logged" in alice.say("!op log boarding at=33.74,-118.27 start=+1h end=2h")
    admin = psycopg.connect(_plain(pg_url), autocommit=True)
    # The bot's backends look for deadlocks after 50 ms, the other session only after a minute: the bot's
    # transaction is the one PostgreSQL aborts.
    admin.execute(f'ALTER DATABASE "{pg_url.rsplit("/", 1)[1]}" SET deadlock_timeout = \'50ms\'')
    admin.close()
    first.db.engine.dispose()
    other = psycopg.connect(_plain(pg_url))
    other.execute("SET deadlock_timeout = '60s'")
    other.execute("SELECT pg_advisory_xact_lock(%s)", (locks.AUDIT_CHAIN,))
    caplog.set_level(logging.WARNING)
    result = {}
    worker = threading.Thread(target=lambda: result.update(reply=alice.say("!op cancel OP-1", event_id="cancel-1")))
    worker.start()
    watcher = psycopg.connect(_plain(pg_url), autocommit=True)
    deadline = time.monotonic() + 20
    while not watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %s",
                              (other.info.backend_pid,)).fetchone()[0]:
        assert time.monotonic() < deadline, "the cancel never waited for the audit lock"
        time.sleep(0.005)
    watcher.close()
    # The cancel holds OP-1 and waits for the audit lock; asking for OP-1 closes the circle.
    other.execute("SELECT id FROM operation WHERE id = 1 FOR UPDATE")
    other.commit()
    other.close()
    worker.join(30)
    assert "OP-1 cancelled" in result["reply"], result
    retried = [r.getMessage() for r in caplog.records if "aborted by the database" in r.getMessage()]
    assert len(retried) == 1 and "deadlock" in retried[0], retried
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    with first.db.session() as s:
        assert s.get(OperationRow, 1).status == "cancelled"
        replies = s.exec(select(OutboxRow).where(OutboxRow.kind == "reply")).all()
        assert sum('"cancel-1"' in r.payload for r in replies) == 1     # answered once
        assert [a.action for a in s.exec(select(AuditRow).order_by(AuditRow.id)).all()] == ["op.log", "op.cancel"]
        assert audit_chain.verify(s)[1] is None


def test_two_agencies_logging_clashing_operations_at_once_make_exactly_one_conflict(two_bots, pg_url, caplog):
    """Both insert their operation before either checks: each check must still see the other's operation, or
    neither raises the conflict. The zone's deconfliction lock makes the second wait for the first to commit."""
    first, second = two_bots
    alice = ConsoleUser(first, "LALB", "alice", "CBP")
    bob = ConsoleUser(second, "LALB", "bob", "USCG")
    rendezvous: list = [None]
    meet_after(first, 0, rendezvous, operation_insert)
    meet_after(second, 1, rendezvous, operation_insert)
    caplog.set_level(logging.WARNING)
    for i in range(ROUNDS):
        where = f"at=33.74,-118.27 start=+{1 + 3 * i}h end=2h"
        rendezvous[0] = Rendezvous(pg_url)
        try:
            a, b = together(lambda: alice.say(f"!op log boarding {where}"), lambda: bob.say(f"!op log patrol {where}"))
            assert all(e.is_set() for e in rendezvous[0].arrived.values())
        finally:
            rendezvous[0].close()
            rendezvous[0] = None
        assert "logged" in a and "logged" in b, (a, b)
        with first.db.session() as s:
            raised = s.exec(select(ConflictRow).where(ConflictRow.kind == "overlap")).all()
        assert len(raised) == i + 1, (i, a, b)      # exactly one new conflict every round
        assert ("CF-" in a) != ("CF-" in b)         # named in the reply of the one that came second
    assert _troubles(caplog) == []
    with first.db.session() as s:
        assert s.execute(text("SELECT count(DISTINCT key) FROM conflict")).scalar() == ROUNDS


def conflict_rows_lock(statement: str, _parameters) -> bool:
    return "FROM conflict" in statement and "FOR UPDATE" in statement


def test_the_scheduled_jobs_racing_an_agency_never_deadlock(two_bots, pg_url, clock, caplog):
    """The escalation and the periodic scan lock the zone's open conflicts and append audit records; an agency
    cancelling or changing an operation of those conflicts at the same moment must not deadlock with them."""
    first, second = two_bots
    alice = ConsoleUser(second, "LALB", "alice", "CBP")
    bob = ConsoleUser(second, "LALB", "bob", "USCG")
    rendezvous: list = [None]
    meet_after(first, 0, rendezvous, conflict_rows_lock)
    meet_after(second, 1, rendezvous, audit_lock)
    caplog.set_level(logging.WARNING)
    for i in range(6):
        _, op_b, cf = _clash(alice, bob, i)
        clock.advance(minutes=16)     # unacknowledged long enough to escalate
        job = (lambda: escalate_due(first.engine)) if i % 2 == 0 else (lambda: scan_all(first.engine))
        mine = f"!op cancel OP-{op_b}" if i % 3 else f'!op update OP-{op_b} note="round {i}"'
        rendezvous[0] = Rendezvous(pg_url)
        try:
            _, reply = together(job, lambda: bob.say(mine))
            assert all(e.is_set() for e in rendezvous[0].arrived.values())
        finally:
            rendezvous[0].close()
            rendezvous[0] = None
        assert f"OP-{op_b} cancelled" in reply or f"OP-{op_b} updated" in reply, (i, reply)
    assert _troubles(caplog) == []
    with first.db.session() as s:
        assert audit_chain.verify(s)[1] is None
