"""The common operating picture over HTTP: `/cop/...` routes added to the health server's aiohttp app.

A one-time link (`cop` in chat) opens a 12-hour session held in a cookie; the page, its data, its live stream
and the feeds show what the viewer's agency may see (commands/cop_feed.py decides). The page loads nothing from
any other host: Leaflet, a coastline and an icon are served from the package, and the Content-Security-Policy
says so. Every answer of this server, errors included, carries the same security headers.
"""
from __future__ import annotations

import asyncio
import gc
import gzip
import hashlib
import html
import logging
import sys
import threading
import time
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger
from jinja2 import Environment, FunctionLoader, StrictUndefined

from watchfloor.bot.web.keys import PARTS
from watchfloor.commands import cop_feed
from watchfloor.commands.ais_ingest import approach_areas
from watchfloor.commands.directory import Sender
from watchfloor.ioc.markings import DEFAULT_ROOM_CLEARANCE, Marking
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import cop
from watchfloor.storage.audit import append as audit_append
from watchfloor.templates import localtime

COOKIE = "wf_cop"
POLL_S = 0.25       # how often an open stream looks for changes: well inside the 2 s a change may take to show
SESSION_S = 5.0     # and whether its session still holds (expired: the stream closes within this; revoked or
                    # signed out: at its next poll, through the revocation mark)
RECHECK_S = 30.0    # and recomputes anyway (operations start and end with time alone)
KEEPALIVE_S = 15.0
VESSEL_BUCKET_S = 10  # the map's operations follow vessels (an operation placed by its vessel) this often at most
MAX_URL = 8192      # longer request targets get 414 (and one warning line), with the usual headers
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("cop_stopping", asyncio.Event)
LAND = Path(str(resources.files("watchfloor.templates").joinpath("cop/static/land")))
log = logging.getLogger("watchfloor.cop")


class _ServerLog(logging.LoggerAdapter):
    """aiohttp's server logger, but a request the HTTP parser refused (a malformed or oversized one: the client's
    mistake, or a scanner's) is one warning line, not a traceback at error level."""

    def exception(self, msg, *args, exc_info=True, **kwargs):
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 500) < 500:
            self.logger.warning("%s: refused with %s, %s", msg % args if args else msg, exc.code,
                                str(exc.message or exc)[:160].replace("\n", " "))
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


# For `web.Application(handler_args=...)`: request lines up to 1 MiB (the body limit) reach the app, which
# answers one over MAX_URL itself (414 with the security headers) instead of the parser's bare 400.
SERVER_ARGS = {"max_line_size": 1024 * 1024, "logger": _ServerLog(server_logger, {})}


def _load(name: str) -> str:
    return resources.files("watchfloor.templates").joinpath(name).read_text(encoding="utf-8")


# Every page escapes; the calendar's words are plain text (icalendar escapes them its own way).
_ENV = Environment(loader=FunctionLoader(_load), autoescape=lambda name: not (name or "").startswith("cop/ics_"),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["localtime"] = localtime
_ENV.filters["x"] = html.escape  # escapes to a plain string: for the thousands of values of a long page


def render(name: str, **data: Any) -> str:
    return _ENV.get_template(name).render(**data)


ZONE = "/cop/{zone:[A-Za-z]{2,8}}"


def add_routes(app: web.Application) -> None:
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(_stopping)
    static = Path(str(resources.files("watchfloor.templates").joinpath("cop/static")))
    app.router.add_static("/cop/static/", static)
    app.router.add_get("/cop/land/{zone:[A-Za-z]{2,8}}.geojson", _land)
    app.router.add_get("/cop/login/{token}", _login)
    app.router.add_get(ZONE, _page)
    app.router.add_get(ZONE + "/panels", _panels)
    app.router.add_get(ZONE + "/ops.geojson", _geojson)
    app.router.add_get(ZONE + "/traffic.geojson", _traffic)
    app.router.add_get(ZONE + "/ops.ics", _ics)
    app.router.add_get(ZONE + "/events", _events)
    app.router.add_post(ZONE + "/logout", _logout)
    app.middlewares.append(_limits)
    # On every response the app prepares: its own, and the router's and the static files' 403, 404 and 405.
    app.on_response_prepare.append(_security_headers)


async def _stopping(app: web.Application) -> None:
    app[STOPPING].set()  # open live streams end, so shutting down does not wait for them


def _csp(parts) -> str:
    img = "'self' data:"
    tiles = parts.settings.service.tile_url
    if tiles:
        u = urlsplit(tiles.replace("{", "").replace("}", ""))
        img += f" {u.scheme}://{u.netloc}"
    return (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {img}; connect-src 'self'; "
            "font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = _csp(request.app[PARTS])
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # a login link's token must not travel on
    response.headers["X-Frame-Options"] = "DENY"
    if response.status >= 400 or not request.path.startswith(("/cop/static/", "/cop/land/")):
        response.headers.setdefault("Cache-Control", "no-store")  # only the package's own files are kept


@web.middleware
async def _limits(request: web.Request, handler):
    if len(request.raw_path) > MAX_URL:
        log.warning("refused a %d-byte request target from %s", len(request.raw_path), request.remote)
        return web.Response(status=414, text="request target too long\n")
    return await handler(request)


def _parts(request: web.Request):
    return request.app[PARTS]


def _denied(reason: str, status: int = 401) -> web.Response:
    return web.Response(status=status, text=render("cop/denied.j2", reason=reason), content_type="text/html")


def _secure(parts) -> bool:
    return (parts.settings.service.base_url or "").lower().startswith("https://")


async def _land(request: web.Request) -> web.Response:
    """The zone's coastline (tools/make_cop_land.py), stored gzipped and sent so to every browser."""
    path = LAND / f"{request.match_info['zone'].upper()}.geojson.gz"
    if not path.is_file():
        raise web.HTTPNotFound()
    body = await asyncio.to_thread(path.read_bytes)
    headers = {"Cache-Control": "public, max-age=86400", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(body=body, content_type="application/geo+json", headers={**headers,
                                                                                    "Content-Encoding": "gzip"})
    return web.Response(body=gzip.decompress(body), content_type="application/geo+json", headers=headers)


async def _login(request: web.Request) -> web.Response:
    parts = _parts(request)
    token = request.match_info["token"]

    def work(s):
        now = parts.engine.clock()
        row, why = cop.redeem_link(s, token, now)
        if row is None:
            return None, why
        session = cop.issue(s, cop.SESSION, row.user_id, row.zone_code, now, row.agency_code, row.clearance)
        audit_append(s, at=now, actor=row.user_id, agency=_who(parts, row).agency, zone=row.zone_code,
                     action="cop.login", detail={"session_expires": now + cop.SESSION_TTL,
                                                 "address": request.remote or ""})
        return (session, row.zone_code), "ok"

    got, why = await asyncio.to_thread(parts.db.transaction, lambda s: work(s))
    if got is None:
        return _denied(why)
    session, zone = got
    # 200 with a same-site refresh rather than a redirect: a SameSite=Strict cookie set on a navigation that
    # came from a chat client (another site) is not sent on that navigation's redirect.
    response = web.Response(text=render("cop/login.j2", zone=zone), content_type="text/html")
    response.set_cookie(COOKIE, session, max_age=int(cop.SESSION_TTL.total_seconds()), path="/cop/", httponly=True,
                        samesite="Strict", secure=_secure(parts))
    return response


def _who(parts, row) -> Sender:
    """The person a token belongs to. The server's configuration names its members; a sender it does not know
    (a console's `--agency`) is who the room that asked for the token knew: that agency, at the clearance the
    room gave them, never above what the configuration clears that agency for."""
    known = parts.directory.sender(row.user_id)
    if known.agency is not None or not row.agency_code:
        return known
    clearance = frozenset(Marking(m) for m in (row.clearance or "").split()) or DEFAULT_ROOM_CLEARANCE
    agency = parts.directory.agencies.get(row.agency_code)
    if agency is not None:
        clearance = (clearance & agency.clearance) or DEFAULT_ROOM_CLEARANCE
    return Sender(row.user_id, known.name, row.agency_code, None, clearance)


class Viewer:
    def __init__(self, parts, row, zone):
        self.sender = _who(parts, row)
        self.zone = zone
        self.clearance = self.sender.clearance


def _zone(request: web.Request):
    return get_zone(request.match_info["zone"])


async def _viewer(request: web.Request, allow_feed_token: bool = False) -> Viewer | None:
    """The session's (or a calendar token's) viewer for the zone in the path, or None. A session opens the zone
    its link was for, no other (tests/test_cop_guards.py breaks this)."""
    parts = _parts(request)
    zone = _zone(request)
    if zone is None:
        return None
    cookie = request.cookies.get(COOKIE, "")
    token = request.query.get("token", "") if allow_feed_token else ""

    def look(s):
        row = cop.session(s, cookie, parts.engine.clock()) if cookie else None
        if row is None and token:
            row = cop.calendar(s, token)
        return row if row is not None and row.zone_code == zone.code else None

    def read():
        with parts.db.session() as s:
            return look(s)

    row = await asyncio.to_thread(read)
    return Viewer(parts, row, zone) if row is not None else None


def _lookback(parts):
    return parts.engine.rules.max_operation


# Each zone's agency colours as given (storage.cop.colour_slots), per database: read once, given when new.
_COLOURS: weakref.WeakKeyDictionary[Any, dict[str, dict[str, str]]] = weakref.WeakKeyDictionary()


def _colours(parts, zone: str, agencies) -> dict[str, str]:
    agencies = set(agencies)
    with _CACHE_LOCK:
        known = _COLOURS.setdefault(parts.db, {}).setdefault(zone, {})
        missing = agencies - known.keys()
    if missing:
        got = parts.db.transaction(lambda s: cop_feed.agency_colours(s, zone, agencies))
        with _CACHE_LOCK:
            known.update(got)
    return {a: known[a] for a in agencies}


def _rows(parts, viewer: Viewer) -> list:
    """The operations the viewer may see, read once for both the map and the timeline and list."""
    def build(s, now):
        return cop_feed.picture_rows(s, viewer.zone, viewer.clearance, now, _lookback(parts))

    return _cached(parts, viewer, "rows", build)


def _panels_html(parts, viewer: Viewer) -> str:
    def build(s, now):
        rows = _rows(parts, viewer)
        colours = _colours(parts, viewer.zone.code, {r.agency_code for r in rows})
        t = cop_feed.timeline(s, viewer.zone, viewer.clearance, now, _lookback(parts), rows, colours)
        return render("cop/panels.j2", t=t, zone=viewer.zone, tz=viewer.zone.tz, now=now)

    return _cached(parts, viewer, "panels", build)


async def _page(request: web.Request) -> web.Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _denied("session")
    parts = _parts(request)
    html = render("cop/page.j2", zone=viewer.zone, viewer=viewer.sender,
                  clearance=sorted(m.value for m in viewer.clearance), tile_url=parts.settings.service.tile_url or "",
                  tz=viewer.zone.tz, now=parts.engine.clock())
    return web.Response(text=html, content_type="text/html")


async def _panels(request: web.Request) -> web.Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _denied("session")
    return web.Response(text=await asyncio.to_thread(_panels_html, _parts(request), viewer), content_type="text/html")


async def _logout(request: web.Request) -> web.Response:
    """Sign-out: the session ends at once (this page's live stream too), and the cookie goes."""
    parts = _parts(request)
    cookie = request.cookies.get(COOKIE, "")

    def work(s):
        now = parts.engine.clock()
        row = cop.end_session(s, cookie, now) if cookie else None
        if row is not None:
            audit_append(s, at=now, actor=row.user_id, agency=_who(parts, row).agency, zone=row.zone_code,
                         action="cop.logout", detail={})

    await asyncio.to_thread(parts.db.transaction, work)
    response = web.Response(text=render("cop/denied.j2", reason="signed_out"), content_type="text/html")
    response.del_cookie(COOKIE, path="/cop/")
    return response


# Per database (a test suite opens many; an id() could be reused), each a small LRU of answers.
_CACHES: weakref.WeakKeyDictionary[Any, OrderedDict[tuple, Any]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()
CACHE_BUCKET_S = 30  # operations start and end with time alone: no answer is reused for longer than this
_FOLLOW_VESSELS = ("traffic",)  # the kinds of answer made of vessels: at every vessel update, not every 10 s


def _cached(parts, viewer: Viewer, kind: str, build):
    """`build(session, now)`'s answer, shared by everyone of the same clearance until the zone's change mark
    moves (or CACHE_BUCKET_S pass): every open page asks again after each change, and most changes come one
    at a time.

    The mark is read before the data: a change committed in between is cached under the older mark and simply
    computed again on the next request."""
    now = parts.engine.clock()
    with parts.db.session() as s:
        audit, ops, vessels = cop_feed.change_mark(s, viewer.zone.code)
    if kind not in _FOLLOW_VESSELS:
        vessels = vessels and int(vessels.timestamp() // VESSEL_BUCKET_S)
    key = (kind, viewer.zone.code, viewer.clearance, (audit, ops, vessels), int(now.timestamp() // CACHE_BUCKET_S))
    with _CACHE_LOCK:
        cache = _CACHES.setdefault(parts.db, OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    with parts.db.session() as s, _collector_paused():
        data = build(s, now)
    with _CACHE_LOCK:
        # An answer for an older mark is never asked for again: only the latest per viewer kind stays (a
        # 2,000-operation GeoJSON is a couple of megabytes).
        for old in [k for k in cache if k[:3] == key[:3]]:
            del cache[old]
        cache[key] = data
        while len(cache) > 64:
            cache.popitem(last=False)
    return data


@contextmanager
def _collector_paused():
    """Python's cycle collector held off while one answer is built: the tens of thousands of short-lived
    strings of a 2,000-row page set off full collections of the whole bot's heap, half the build's time.
    Reference counting still frees them; the collector runs again right after (a thread that found it paused
    leaves it to the one that paused it)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _area(parts, viewer: Viewer):
    return approach_areas(parts.settings).get(viewer.zone.code)


def _geojson_data(parts, viewer: Viewer, circles: bool = False) -> tuple[bytes, str]:
    """The viewer's GeoJSON as bytes, and its version (what the live stream's events are numbered by): as the
    page asks for it (operations at their centres), or with `circles` as polygons (the feed's form)."""
    def build(s, now):
        rows = _rows(parts, viewer)
        colours = _colours(parts, viewer.zone.code, {r.agency_code for r in rows})
        body = cop_feed.geojson(s, viewer.zone, viewer.clearance, now, _lookback(parts), _area(parts, viewer), rows,
                                colours, circles)
        return body.encode(), cop_feed.fingerprint(body)

    return _cached(parts, viewer, "geojson" if circles else "geojson-centres", build)


def _traffic_data(parts, viewer: Viewer) -> tuple[bytes, str]:
    def build(s, now):
        body = cop_feed.traffic(s, viewer.zone, viewer.clearance, now, _area(parts, viewer))
        return body.encode(), cop_feed.fingerprint(body)

    return _cached(parts, viewer, "traffic", build)


async def _geojson(request: web.Request) -> web.Response:
    viewer = await _viewer(request, allow_feed_token=True)
    if viewer is None:
        return _denied("session")
    circles = request.query.get("geometry") != "centre"  # RFC 7946 polygons unless the page asks for centres
    body, version = await asyncio.to_thread(_geojson_data, _parts(request), viewer, circles)
    # The page starts listening to the live stream from this version.
    return web.Response(body=body, content_type="application/geo+json", headers={"X-Version": version})


async def _traffic(request: web.Request) -> web.Response:
    viewer = await _viewer(request, allow_feed_token=True)
    if viewer is None:
        return _denied("session")
    body, version = await asyncio.to_thread(_traffic_data, _parts(request), viewer)
    return web.Response(body=body, content_type="application/geo+json", headers={"X-Version": version})


async def _ics(request: web.Request) -> web.Response:
    viewer = await _viewer(request, allow_feed_token=True)
    if viewer is None:
        return _denied("calendar")
    parts = _parts(request)

    def build() -> bytes:
        with parts.db.session() as s:
            return cop_feed.calendar(s, viewer.zone, viewer.clearance, render, parts.engine.clock())

    body = await asyncio.to_thread(build)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    wanted = [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]
    if etag in wanted or "*" in wanted:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": "text/calendar; charset=utf-8"})


_MARKS: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, Any]]] = weakref.WeakKeyDictionary()


def _shared_mark(parts, key: str, read) -> Any:
    """A mark every open stream polls (a zone's changes, the revocations), read at most once per half poll
    whatever the number of open pages."""
    now = time.monotonic()
    with _CACHE_LOCK:
        marks = _MARKS.setdefault(parts.db, {})
        got = marks.get(key)
        if got is not None and now - got[0] < POLL_S / 2:
            return got[1]
    with parts.db.session() as s:
        mark = read(s)
    with _CACHE_LOCK:
        marks[key] = (now, mark)
    return mark


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: `change` whenever the operations this viewer sees change, `traffic` whenever the
    vessels do; the page then fetches that part again.

    The event id is a digest of what the viewer sees (operations, then traffic), so a reconnect with
    Last-Event-ID gets an event only if something changed meanwhile, and a change the viewer may not see (an
    LES operation) sends nothing at all. The stream ends as soon as its session does: expired, revoked
    (`cop revoke`) or signed out."""
    viewer = await _viewer(request)
    if viewer is None:
        return _denied("session")
    parts = _parts(request)
    cookie = request.cookies.get(COOKIE, "")
    stopping = request.app[STOPPING]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    since = request.headers.get("Last-Event-ID") or request.query.get("since", "")
    last_ops, _, last_traffic = since.partition(".")
    mark: tuple | None = None
    loop = asyncio.get_running_loop()
    checked = sent = session_checked = loop.time()
    revoked = _shared_mark(parts, "revoked", cop.revocation_mark)

    def poll(force: bool, check_session: bool):
        nonlocal revoked
        now_revoked = _shared_mark(parts, "revoked", cop.revocation_mark)
        if check_session or now_revoked != revoked:
            revoked = now_revoked
            with parts.db.session() as s:
                if cop.session(s, cookie, parts.engine.clock()) is None:
                    return None, None
        now_mark = _shared_mark(parts, "zone:" + viewer.zone.code,
                                lambda s: cop_feed.change_mark(s, viewer.zone.code))
        if now_mark == mark and not force:
            return now_mark, None
        return now_mark, (_geojson_data(parts, viewer)[1], _traffic_data(parts, viewer)[1])

    try:
        await response.write(b"retry: 1000\n\n")
        while not stopping.is_set():
            force = loop.time() - checked > RECHECK_S
            check_session = loop.time() - session_checked > SESSION_S
            new_mark, digests = await asyncio.to_thread(poll, force, check_session)
            if new_mark is None:
                break  # the session ended: the page's next request is refused, and it says so
            if force:
                checked = loop.time()
            if check_session:
                session_checked = loop.time()
            mark = new_mark
            news = []
            if digests and digests[0] != last_ops:
                news.append("change")
            if digests and digests[1] != last_traffic:
                news.append("traffic")
            if news:
                last_ops, last_traffic = digests
                for event in news:
                    await response.write(f"id: {last_ops}.{last_traffic}\nevent: {event}\ndata: {{}}\n\n".encode())
                sent = loop.time()
            elif loop.time() - sent > KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                sent = loop.time()
            try:
                await asyncio.wait_for(stopping.wait(), POLL_S)
            except asyncio.TimeoutError:
                pass
    except ConnectionResetError:
        pass  # the page was closed
    return response
