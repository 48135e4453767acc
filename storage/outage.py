"""Telling a database that cannot be reached right now from everything else.

A message whose handling failed because the database was unreachable (connection refused or dropped, the pool
timed out, a failover) is kept and handled again once the database answers; bad input is answered, and a bug is
answered once with "something went wrong" — retrying either would loop forever.
"""
from __future__ import annotations

from sqlalchemy import exc

# SQLite reports schema and SQL mistakes as OperationalError too: those are bugs, not outages.
_NOT_AN_OUTAGE = ("no such table", "no such column", "has no column", "syntax error")


def unreachable(e: BaseException) -> bool:
    """True when `e` says the database could not be reached (try the same work again later)."""
    if isinstance(e, exc.DBAPIError) and e.connection_invalidated:
        return True
    if isinstance(e, (exc.OperationalError, exc.InterfaceError)):
        reason = str(e.orig or e).lower()
        return not any(s in reason for s in _NOT_AN_OUTAGE)
    return isinstance(e, (exc.TimeoutError, ConnectionError))
