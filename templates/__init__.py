"""Every word a user reads: Jinja2 templates rendered once per output format.

One template per message serves every platform. It is rendered three times — plain text, Matrix HTML
(auto-escaped) and Slack mrkdwn — and the mrkdwn rendering is cut into Block Kit blocks at the template's
`{{ hr() }}` marks. Buttons a template declares with `{{ button(...) }}` become a Slack actions block and are
left out of the text and HTML.
"""
from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
import os
from importlib import resources
from typing import Any

from markupsafe import Markup, escape

# Jinja2 itself is imported when the first template is rendered: `plural` and `clock_time` serve commands that
# render nothing (`config check`, the demo's summary), which start faster without it.

_SECTION = "\x1e"
_MAX_SECTION = 2900
_MENTIONS = re.compile(r"@(room|channel|here|everyone)\b", re.IGNORECASE)
_MXID = re.compile(r"^@[a-z0-9._=/+-]+:[A-Za-z0-9.-]+(?::\d+)?$")
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


class _Safe(str):
    """Already formatted for the current mode; not escaped again."""


@dataclass
class Rendered:
    text: str
    html: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "html": self.html, "blocks": self.blocks}


def _defuse(s: str) -> str:
    """No control characters, and no @room/@channel that would ping everyone."""
    return _MENTIONS.sub(lambda m: "@\u200b" + m.group(1), _CTRL.sub("", s))


_AMP = re.compile(r"&(?!(?:amp|lt|gt);)")


def _mrkdwn_escape(s: str) -> str:
    """Slack's three control characters. Idempotent: a macro's output passes `finalize` a second time, and
    `&lt;` must not become `&amp;lt;` (shown literally); an already-escaped `&lt;` is inert as it is."""
    return _AMP.sub("&amp;", s).replace("<", "&lt;").replace(">", "&gt;")


def _load(name: str) -> str:
    file = name if name.endswith(".j2") else f"{name}.j2"
    return resources.files("watchfloor.templates").joinpath(file).read_text(encoding="utf-8")


class _Mode:
    def __init__(self, name: str):
        self.name = name

    def wrap(self, s: Any, text_fmt: str, html_tag: str | None, mrk: str) -> Any:
        s = _defuse(str(s))
        if self.name == "html":
            return Markup(f"<{html_tag}>{escape(s)}</{html_tag}>") if html_tag else escape(s)
        if self.name == "mrkdwn":
            return _Safe(mrk.format(_mrkdwn_escape(s)) if s else "")
        return _Safe(text_fmt.format(s))

    def globals(self) -> dict[str, Any]:
        return {
            "b": lambda s: self.wrap(s, "{}", "b", "*{}*"),
            "i": lambda s: self.wrap(s, "{}", "i", "_{}_"),
            "code": lambda s: self.wrap(s, "{}", "code", "`{}`"),
            "hr": lambda: Markup(_SECTION) if self.name == "html" else _Safe(_SECTION),
            "button": self.button,
            "mode": self.name,
        }

    def person(self, platform_id: str | None) -> Any:
        """A sender id as people read it: `console:sam` is sam, a Matrix user its MXID, and a Slack user a
        mention in Slack (shown as the name) or the bare id elsewhere."""
        if not platform_id:
            return ""
        platform, _, who = str(platform_id).partition(":")
        if platform == "slack" and self.name == "mrkdwn" and who.isalnum():
            return _Safe(f"<@{who}>")
        return who or platform

    def mention(self, platform_id: str | None, name: str | None = None) -> Any:
        """A person called by name so their phone notifies: `<@U…>` in Slack mrkdwn, a Matrix pill (a matrix.to
        link) in HTML; elsewhere, and for a person of another platform, their name."""
        platform, _, who = str(platform_id or "").partition(":")
        label = _defuse(name or who or platform)
        if platform == "slack" and self.name == "mrkdwn" and who.isalnum():
            return _Safe(f"<@{who}>")
        if platform == "matrix" and self.name == "html" and _MXID.match(who):
            return Markup(f'<a href="https://matrix.to/#/{escape(who)}">{escape(label)}</a>')
        return label

    def button(self, action_id: str, label: str, value: str = "", style: str | None = None) -> str:
        # The environment is shared by every render, so the buttons of this render live in a context var.
        collected = _BUTTONS.get()
        if collected is not None:
            collected.append({"action_id": action_id, "label": label, "value": value, "style": style or ""})
        return Markup("") if self.name == "html" else _Safe("")

    def finalize(self, value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, (_Safe, Markup)):
            return value
        s = _defuse(str(value))
        return _mrkdwn_escape(s) if self.name == "mrkdwn" else s


_BUTTONS: ContextVar[list[dict[str, str]] | None] = ContextVar("watchfloor_buttons", default=None)
_ENVS: dict[str, Any] = {}


def _env(mode_name: str):
    """One environment per output format, kept: Jinja then compiles each template once (~0.15 s saved each)."""
    env = _ENVS.get(mode_name)
    if env is not None:
        return env
    from jinja2 import Environment, FunctionLoader, StrictUndefined

    mode = _Mode(mode_name)
    env = Environment(
        loader=FunctionLoader(_load),
        bytecode_cache=_bytecode_cache(mode_name),
        autoescape=mode_name == "html",
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
        finalize=mode.finalize,
        keep_trailing_newline=False,
    )
    env.globals.update(mode.globals())
    env.filters["localtime"] = localtime
    # `day`: the time that sets the day instead of the message's `now` (an end shown beside its start).
    env.filters["clock"] = lambda dt, tz, day=None: clock_time(dt, tz, day or _NOW.get())
    env.filters["person"] = mode.person
    env.filters["mention"] = mode.mention
    env.filters["plural"] = plural
    return _ENVS.setdefault(mode_name, env)


def _bytecode_cache(mode_name: str):
    """Compiled templates kept between runs: compiling costs a CLI command a quarter of a second. Keyed by the
    template's source checksum (Jinja's own check) and the output format, whose settings change the compiled code."""
    from jinja2 import FileSystemBytecodeCache

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "watchfloor", "templates")
    try:
        os.makedirs(directory, exist_ok=True)
        if not os.access(directory, os.W_OK):
            return None
    except OSError:
        return None
    return FileSystemBytecodeCache(directory, pattern=f"{mode_name}-%s.cache")


def localtime(dt: datetime | None, tz, fmt: str = "%a %d %b %H:%M %Z") -> str:
    """A UTC time shown in the zone's time zone with its abbreviation (PST, EDT, ChST...)."""
    if dt is None:
        return "—"
    return dt.astimezone(tz).strftime(fmt)


def clock_time(dt: datetime | None, tz, now: datetime | None) -> str:
    """A time as a reply says it: `19:54 PST` on the day it is said (zone local), `Wed 02 Dec 19:54 PST` on any
    other day, so "until 19:54" never leaves the reader guessing which one. Without a `now`, always dated."""
    if dt is None:
        return "—"
    local = dt.astimezone(tz)
    if now is not None and local.date() == now.astimezone(tz).date():
        return local.strftime("%H:%M %Z")
    return local.strftime("%a %d %b %H:%M %Z")


def plural(n: int, word: str, many: str | None = None) -> str:
    """A count as English reads it: `1 open conflict`, `2 open conflicts` (`many` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


# The moment a message is written for (its `now`): what "today" is for the `clock` filter, macros included.
_NOW: ContextVar[datetime | None] = ContextVar("watchfloor_now", default=None)


def render(name: str, **ctx: Any) -> Rendered:
    """Render a template in every output format. A `now` in the data is when it is said: times on that day
    (zone local) go without their date (`clock` filter)."""
    outputs = {}
    buttons: list[dict[str, str]] = []
    now_token = _NOW.set(ctx.get("now"))
    try:
        for mode_name in ("text", "html", "mrkdwn"):
            collected: list[dict[str, str]] = []
            token = _BUTTONS.set(collected)
            try:
                outputs[mode_name] = _env(mode_name).get_template(name).render(**ctx).strip()
            finally:
                _BUTTONS.reset(token)
            if mode_name == "mrkdwn":
                buttons = collected
    finally:
        _NOW.reset(now_token)
    text = "\n".join(line.rstrip() for line in outputs["text"].replace(_SECTION, "").strip().splitlines())
    html = _html_lines(outputs["html"])
    return Rendered(text=_squeeze(text), html=html, blocks=_blocks(outputs["mrkdwn"], buttons))


def _squeeze(s: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", s).strip()


def _html_lines(s: str) -> str:
    parts = [p.strip("\n") for p in s.split(_SECTION)]
    return "<br>\n".join(_squeeze(p).replace("\n", "<br>\n") for p in parts if p.strip())


def _blocks(mrkdwn: str, buttons: list[dict[str, str]]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in mrkdwn.split(_SECTION):
        part = _squeeze(part)
        while part:
            chunk, part = _cut(part)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
    if buttons:
        elements = []
        for btn in buttons:
            el = {"type": "button", "action_id": btn["action_id"], "value": btn["value"],
                  "text": {"type": "plain_text", "text": btn["label"]}}
            if btn["style"]:
                el["style"] = btn["style"]
            elements.append(el)
        for i in range(0, len(elements), 25):
            blocks.append({"type": "actions", "elements": elements[i:i + 25]})
    # No cut at Slack's 50 blocks here: delivery posts a longer message as several, so nothing is dropped.
    return blocks


def _cut(s: str) -> tuple[str, str]:
    if len(s) <= _MAX_SECTION:
        return s, ""
    at = s.rfind("\n", 0, _MAX_SECTION)
    at = at if at > 0 else _MAX_SECTION
    return s[:at], s[at:].lstrip("\n")
