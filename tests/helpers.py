"""Small helpers for driving the engine in tests as a chat user would."""
from __future__ import annotations

import itertools
import json

from watchfloor.bot.wiring import Parts, build
from watchfloor.commands.message import ChatMessage
from watchfloor.commands.posting import for_clearance
from watchfloor.config import load_settings

_ids = itertools.count(1)


def make_parts(db_url: str, clock=None, config: str | None = None, **settings) -> Parts:
    s = load_settings(config, **settings)
    kwargs = {"clock": clock} if clock else {}
    return build(settings=s, db_url=db_url, **kwargs)


class ConsoleUser:
    """One person in a zone's console room."""

    def __init__(self, parts: Parts, zone: str, user: str, agency: str | None = None, role: str | None = None):
        self.parts = parts
        self.room, self.sender = parts.directory.add_console(zone, user, agency, role)

    def say(self, text: str, event_id: str | None = None) -> str:
        msg = ChatMessage(platform="console", room=self.room.id, sender=self.sender.id, text=text,
                          event_id=event_id or f"t-{next(_ids)}", sender_name=self.sender.name)
        handled = self.parts.engine.handle(msg)
        return "\n".join(for_clearance(json.loads(r.payload), self.sender.clearance)["text"] for r in handled.rows)


def check_query_plans(parts: Parts, probe) -> list[str]:
    """The plan (SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN) of each query the per-operation conflict check
    runs for `probe`."""
    from sqlalchemy import event

    statements = []

    def capture(_conn, _cursor, statement, params, _context, _many):
        if statement.lstrip().upper().startswith("SELECT") and "FROM operation" in statement:
            statements.append((statement, params))

    with parts.db.session() as s:
        event.listen(parts.db.engine, "before_cursor_execute", capture)
        try:
            parts.engine.deconfliction.findings_for(s, probe)
        finally:
            event.remove(parts.db.engine, "before_cursor_execute", capture)
        explain, col = ("EXPLAIN (COSTS OFF) ", 0) if parts.db.is_postgres else ("EXPLAIN QUERY PLAN ", 3)
        return [" | ".join(str(r[col]).strip() for r in s.connection().exec_driver_sql(explain + q, p).fetchall())
                for q, p in statements]


def process_gone(pid: int) -> bool:
    """No such process, or a zombie (the container's init may not reap it: it runs no more code)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def child_outlives_a_sigkilled_parent(tmp_path, script: str) -> bool:
    """Run `script` (a bot that starts a child process and prints its pid), SIGKILL it (no atexit, no clean-up of
    its children) and say whether the child is still there 10 s later."""
    import subprocess
    import sys
    import time

    path = tmp_path / "bot.py"
    path.write_text(script)
    bot = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        child = int(bot.stdout.readline())
        assert not process_gone(child), "the child was gone before its parent was killed"
        bot.kill()
        bot.wait()
        deadline = time.monotonic() + 10
        while not process_gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)  # another process: nothing to wait on but its state
        return not process_gone(child)
    finally:
        if bot.poll() is None:
            bot.kill()
