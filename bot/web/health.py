"""Health and metrics over HTTP (aiohttp): `/healthz` for orchestrators, `/metrics` for Prometheus.

`/healthz` answers 200 only when the database and every configured platform answered just now, else 503;
the JSON body names each check so an operator sees which part is down. Each check has a time limit: a hung
homeserver makes the answer "unreachable", not a hung probe. A platform that refused the bot's credentials
(delivery found out when sending) is down whatever its probe says, with the reason.

`/metrics` tells which agencies are active: the server listens on loopback unless `[service] host` says
otherwise, and with `[service] metrics_token` it answers only `Authorization: Bearer <token>` (else 401).
"""
from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from watchfloor.bot import metrics
from watchfloor.bot.web.keys import ADAPTERS, DELIVERY, DUTIES, PARTS

CHECK_TIMEOUT = 5.0


async def start_health(parts: Any, adapters: Iterable[Any] | Mapping[str, Any] | None, port: int,
                       host: str = "127.0.0.1", *, delivery: Any = None, duties: Any = None) -> web.AppRunner:
    """Serve /healthz and /metrics on host:port (port 0 picks a free one; see `bound_port`).
    `delivery` (the running Delivery) tells which platforms refused our credentials; `duties` (bot.duties)
    which duties this replica holds.
    Returns the running AppRunner; `await runner.cleanup()` stops it."""
    from watchfloor.bot.web.cop import SERVER_ARGS, add_routes  # the common operating picture shares this server

    app = web.Application(handler_args=SERVER_ARGS)
    app[PARTS] = parts
    app[ADAPTERS] = _named(adapters)
    app[DELIVERY] = delivery
    app[DUTIES] = duties
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    add_routes(app)
    runner = web.AppRunner(app, access_log=None)  # probes every few seconds would drown the useful events
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    return runner.addresses[0][1]


async def check_all(parts: Any, adapters: Mapping[str, Any], delivery: Any = None,
                    duties: Any = None) -> dict[str, dict[str, Any]]:
    """Every check concurrently: {"database": {"ok": True, "ms": 3}, "matrix": {"ok": False, "error": ...}}.
    A Matrix adapter waiting for its duty (another replica syncs) is not logged in, and not this replica's fault:
    it shows as standing by."""
    async def database() -> bool:
        return await asyncio.to_thread(parts.db.ping)

    standby = {name for name, a in adapters.items()
               if duties is not None and getattr(a, "wait_for_duty", False)
               and not duties.held(getattr(a, "platform", name))}
    checks = {"database": database, **{name: a.healthy for name, a in adapters.items() if name not in standby}}
    results = await asyncio.gather(*(_timed(fn) for fn in checks.values()))
    out = dict(zip(checks, results))
    for name in standby:
        out[name] = {"ok": True, "standby": "another replica holds this duty", "ms": 0}
    for name, adapter in adapters.items():
        refused = delivery.refused(getattr(adapter, "platform", name)) if delivery is not None else None
        if refused:
            out[name] = {"ok": False, "error": f"credentials refused: {refused}"[:200], "ms": out[name]["ms"]}
    for name, result in out.items():
        metrics.set_platform_up(name, result["ok"])
    return out


async def _timed(fn) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        ok = bool(await asyncio.wait_for(fn(), CHECK_TIMEOUT))
        result: dict[str, Any] = {"ok": ok} if ok else {"ok": False, "error": "unreachable"}
    except asyncio.TimeoutError:
        result = {"ok": False, "error": f"no answer within {CHECK_TIMEOUT:g} s"}
    except Exception as e:  # a probe that raises is a part that is down, not a broken health endpoint
        result = {"ok": False, "error": type(e).__name__}
    result["ms"] = round((time.perf_counter() - t0) * 1000)
    return result


async def _healthz(request: web.Request) -> web.Response:
    duties = request.app[DUTIES]
    checks = await check_all(request.app[PARTS], request.app[ADAPTERS], request.app[DELIVERY], duties)
    healthy = all(c["ok"] for c in checks.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable", "checks": checks}
    if duties is not None:
        body["duties"] = [name for name, on in duties.holding().items() if on]
    return web.json_response(body, status=200 if healthy else 503)


async def _metrics(request: web.Request) -> web.Response:
    parts = request.app[PARTS]
    token = parts.settings.service.metrics_token
    if token is not None and not _bearer_matches(request, token.get_secret_value()):
        return web.Response(status=401, text="a bearer token is required for /metrics\n",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    try:
        # The engine's clock, not the wall clock: the same "now" the rows were stamped with.
        await asyncio.to_thread(metrics.refresh_outbox, parts.db, parts.engine.clock())
    except Exception:
        pass  # the database being down shows in /healthz; the counters are still worth scraping
    duties = request.app[DUTIES]
    if duties is not None:
        metrics.set_duties(duties.holding())  # leases are read now: a replica thawed after a freeze shows 0
    body = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE_LATEST})


def _bearer_matches(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Compared as bytes in constant time: how much of a guess matched must not show in the answer's timing.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _named(adapters: Iterable[Any] | Mapping[str, Any] | None) -> dict[str, Any]:
    if adapters is None:
        return {}
    if isinstance(adapters, Mapping):
        return dict(adapters)
    out: dict[str, Any] = {}
    for a in adapters:
        name = getattr(a, "platform", None) or type(a).__name__.lower()
        out[name if name not in out else f"{name}-{len(out)}"] = a
    return out
