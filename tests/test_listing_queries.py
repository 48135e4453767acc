"""Listings read what each row needs (its target, its endorsing agencies) in a fixed number of queries: a busy
morning with thirty open targets and conflicts costs the database no more round trips than a quiet one."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event

from tests.helpers import ConsoleUser, make_parts


@contextmanager
def counted(parts):
    statements: list[str] = []

    def capture(_conn, _cursor, statement, _params, _context, _many):
        statements.append(statement)

    event.listen(parts.db.engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(parts.db.engine, "before_cursor_execute", capture)


def _busy_zone(parts, zone: str, n: int) -> ConsoleUser:
    """n high-priority arrivals nobody covers (n gap conflicts), each endorsed by two agencies."""
    alice = ConsoleUser(parts, zone, "alice", "CBP")
    bob = ConsoleUser(parts, zone, "bob", "USCG")
    for i in range(n):
        vessel = f"{366123400 + i}"
        assert "nominated" in alice.say(f"!target nominate {vessel} priority=high eta=+3h")
        assert "USCG now endorses" in bob.say(f"!target nominate {vessel}")
    return alice


def _queries(parts, user: ConsoleUser, text: str) -> tuple[int, str]:
    with counted(parts) as statements:
        reply = user.say(text)
    return len(statements), reply


def test_target_and_conflict_listings_cost_the_same_number_of_queries_for_1_or_30_rows(db_url, clock):
    parts = make_parts(db_url, clock)
    quiet, busy = _busy_zone(parts, "LALB", 1), _busy_zone(parts, "NY", 30)
    for command, expect in (("!target list", "endorsed by CBP, USCG"), ("!conflicts", "nobody is covering it")):
        n1, r1 = _queries(parts, quiet, command)
        n30, r30 = _queries(parts, busy, command)
        assert r1.count(expect) == 1 and r30.count(expect) == 30, (r1, r30)
        assert n30 == n1, f"{command}: {n1} queries for one row, {n30} for thirty"
