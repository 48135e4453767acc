"""Telemetry hooks: commands report what happened here, and the bot's metrics and logs listen.

Keeps `commands/` free of any import from `bot/`; `bot.metrics` registers its listeners when it is imported.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

_listeners: dict[str, list[Callable[..., None]]] = {"command": [], "alerts": [], "escalations": []}


def listen(event: str, fn: Callable[..., None]) -> None:
    if fn not in _listeners[event]:
        _listeners[event].append(fn)


def notify(event: str, *args: Any) -> None:
    """Call every listener; telemetry never turns a handled command into an error."""
    for fn in _listeners[event]:
        try:
            fn(*args)
        except Exception:  # pragma: no cover - best effort
            logging.getLogger("watchfloor.observers").debug("listener failed", exc_info=True)
