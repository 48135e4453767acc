"""Shared fixtures: databases (SQLite and PostgreSQL), a controllable clock, the real homeserver and Slack API."""
from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.postgres import PG_ADMIN_URL, temporary_database

pytest_plugins = ["tests.fixtures.synapse", "tests.fixtures.slack_api"]

REQUIRE_PG = os.environ.get("WATCHFLOOR_REQUIRE_PG") == "1"


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as e:  # pragma: no cover - depends on the machine
        return f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {e}"


@pytest.fixture(scope="session")
def pg_server():
    """The machine's PostgreSQL; skipped (with the reason) only where it is unreachable, unless required."""
    problem = _pg_reachable()
    if problem:
        if REQUIRE_PG:
            pytest.fail(problem + " (WATCHFLOOR_REQUIRE_PG=1)")
        pytest.skip(problem)
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with temporary_database(pg_server) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'watchfloor.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each test using this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'watchfloor.db'}"
    return request.getfixturevalue("pg_url")


class Clock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 12, 1, 15, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> datetime:
        self.now += timedelta(**kw)
        return self.now


@pytest.fixture
def clock():
    return Clock()
