"""Structured logs with structlog: JSON lines when stdout is not a terminal (containers, journald), a readable
console rendering otherwise. One event per command, relay and alert.

Marked content never reaches a log: events about FOUO/LES items carry the marking and ids only. `safe_text`
is the one way to put message text in an event, and `redact_marked` drops any `text`/`note`/`body`-like field
of an event that carries a marking above UNCLASS, as a net under callers that forget.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from watchfloor.ioc.markings import Marking, marking_of_text

CHATTY_LOGGERS = ("apscheduler", "alembic.runtime.plugins")
_TEXT_KEYS = ("text", "body", "note", "reason", "raw", "message_text", "detail", "error")


def safe_text(text: str, marking: str | Marking | None = None, limit: int = 200) -> str:
    """The text to log for a message: itself when UNCLASS, else only that it was withheld."""
    mark = Marking(marking) if marking else marking_of_text(text)
    if mark != Marking.UNCLASS:
        return f"[{mark.value} text withheld]"
    return text[:limit]


def redact_marked(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: an event marked FOUO or LES keeps its ids and marking, loses its text."""
    mark = event.get("marking")
    text_marking = None
    for key in _TEXT_KEYS:
        value = event.get(key)
        if isinstance(value, str) and marking_of_text(value) != Marking.UNCLASS:
            text_marking = marking_of_text(value)
    if (mark and str(mark).upper() not in ("UNCLASS", "MARKING.UNCLASS")) or text_marking is not None:
        for key in _TEXT_KEYS:
            if key in event:
                event[key] = "[withheld]"
        event.setdefault("marking", text_marking.value if text_marking else mark)
    return event


def _route_to_stdlib() -> None:
    """Until `configure_logging` runs (the console, one-shot commands, tests), events go to the standard
    library's loggers, which drop INFO by default: structlog's own default prints to stdout, which would
    mix log lines into the console room's replies."""
    if structlog.is_configured():
        return
    structlog.configure(
        # Rendered to one key=value string, readable under whatever formatter the root logger has.
        processors=[structlog.stdlib.filter_by_level, redact_marked,
                    structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True)],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def configure_logging(level: str | int = "INFO", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Route structlog and the standard library's logging (sqlalchemy, aiohttp, nio) through one renderer."""
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_marked,
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_watchfloor", False)]:
        root.removeHandler(old)
    handler._watchfloor = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries' chatter at INFO is not our events: APScheduler announces every job it adds and every run
    # ("Adding job tentatively", "Running job"), Alembic every plugin it sets up. Shown only when asked for DEBUG;
    # their warnings and errors always. (Alembic's "Running upgrade" lines stay: a schema change is news.)
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)


def get_logger(name: str = "watchfloor") -> structlog.stdlib.BoundLogger:
    _route_to_stdlib()
    return structlog.get_logger(name)


def log_command(*, command: str, action: str | None, outcome: str, room: str, sender: str,
                agency: str | None, event_id: str, marking: str | None = None, entity: str | None = None,
                error: str | None = None) -> None:
    """One event per handled command: who, where, which command and how it ended — never its arguments,
    which can hold FOUO/LES details (notes, vessel names)."""
    get_logger("watchfloor.commands").info(
        "command", command=command, action=action, outcome=outcome, room=room, sender=sender, agency=agency,
        event_id=event_id, marking=marking, entity=entity, error=error)


def log_relay(*, origin_room: str, to_room: str, marking: str, event_id: str, agency: str | None = None) -> None:
    get_logger("watchfloor.bridge").info("relay", origin_room=origin_room, to_room=to_room, marking=marking,
                                         event_id=event_id, agency=agency)


def log_alert(*, event: str, conflict: str, kind: str, zone: str, marking: str, rooms: int | None = None) -> None:
    get_logger("watchfloor.alerts").info("alert", alert_event=event, conflict=conflict, kind=kind, zone=zone,
                                         marking=marking, rooms=rooms)
