"""The keys under which the HTTP server's app carries what its routes read (health and the picture alike)."""
from __future__ import annotations

from typing import Any

from aiohttp import web

PARTS: web.AppKey[Any] = web.AppKey("parts", object)
ADAPTERS: web.AppKey[dict[str, Any]] = web.AppKey("adapters", dict)
DELIVERY: web.AppKey[Any] = web.AppKey("delivery", object)
DUTIES: web.AppKey[Any] = web.AppKey("duties", object)
