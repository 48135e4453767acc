"""A message too long for its platform, as several posts in order, each within the platform's limits.

Cut at block boundaries (Slack) or line boundaries (text, Matrix HTML); nothing is dropped: a single line
longer than a whole post is cut inside, never inside an HTML tag or entity. A message that fits is one page,
unchanged.

A message with a picture (a briefing's timeline), for an adapter that posts pictures apart (`picture_apart`: a
Slack upload, a Matrix m.image are calls of their own after the text), ends with one more page holding only the
picture (`PICTURE` set). So delivery records the text as posted before the picture goes, and a replica that
takes over finds what is there page by page (`find_pages`) and posts only what is missing: the picture is never
lost to a crash between the two calls, nor posted twice.
"""
from __future__ import annotations

import html as htmllib
import json
import re
from collections.abc import Callable
from typing import Any

from watchfloor.bot.adapter import MessageLimits

PICTURE = "picture"  # set on the page that is the message's picture alone
# What the picture page does not carry: the text is on the pages before it, and an alert is changed by page 1.
_TEXT_KEYS = ("text", "html", "blocks", "conflict_update", "image")

_TAG = re.compile(r"<[^>]*>")
_BR = re.compile(r"<br\s*/?>")


def pages(kind: str, payload: dict[str, Any], limits: MessageLimits | None, *,
          picture_apart: bool = False) -> list[dict[str, Any]]:
    """The payload as the posts to make, first to last (one, the payload itself, when it fits and has no picture
    to post apart)."""
    if picture_apart and payload.get("image") and kind not in ("edit", "redact"):
        text = pages(kind, {k: v for k, v in payload.items() if k != "image"}, limits)
        picture = {k: v for k, v in payload.items() if k not in _TEXT_KEYS}
        picture.update({PICTURE: True, "image": payload["image"]})
        out = [*text, picture]  # fresh dicts all (the text's are cut from a copy): numbered in place
        for i, page in enumerate(out):
            page.update(page=i + 1, pages=len(out))
        return out
    if limits is None or kind == "redact" or fits(kind, payload, limits):
        return [payload]
    text, html, blocks = payload.get("text") or "", payload.get("html") or "", payload.get("blocks") or []
    if limits.max_blocks and blocks:
        # Slack shows the blocks; each page's text (what notifications show) is the text of its own blocks.
        groups = _greedy(blocks, lambda g: _fits_blocks(g, limits))
        # A page of buttons alone has no text of its own: its notification names the message it belongs to.
        title = text.split("\n", 1)[0][:200]
        contents = [{"blocks": g, "text": _blocks_text(g) or title, "html": None} for g in groups]
    elif html:
        ok = lambda h: _size(kind, _plain(h), h) <= _budget(limits)  # noqa: E731
        per = 2 if kind == "edit" else 1
        cut = _greedy_lines(html, lambda line: per * (_esc(line) + _esc(_plain(line))), per * 4,
                            _budget(limits) - per * 4, ok, html=True)
        contents = [{"html": h, "text": _plain(h), "blocks": []} for h in cut]
    else:
        ok = lambda t: _text_fits(kind, t, limits)  # noqa: E731
        if limits.max_bytes is not None:
            per = 2 if kind == "edit" else 1
            cut = _greedy_lines(text, lambda line: per * _esc(line), per * 2, limits.max_bytes - per * 4, ok)
        else:
            cut = _greedy_lines(text, len, 1, limits.max_text or 1 << 62, ok)
        contents = [{"text": t, "html": None, "blocks": []} for t in cut]
    if len(contents) == 1:
        return [payload]
    out = []
    for i, content in enumerate(contents):
        page = {k: v for k, v in payload.items() if k not in ("image", "conflict_update")}
        if i == 0 and "conflict_update" in payload:
            page["conflict_update"] = payload["conflict_update"]  # the alert is changed once, by the first page
        if i == len(contents) - 1 and "image" in payload:
            page["image"] = payload["image"]  # the picture after all the text, as it would be in one post
        page.update(content, page=i + 1, pages=len(contents))
        out.append(page)
    return out


def fits(kind: str, payload: dict[str, Any], limits: MessageLimits) -> bool:
    text, html, blocks = payload.get("text") or "", payload.get("html") or "", payload.get("blocks") or []
    if limits.max_text is not None and len(text) > limits.max_text:
        return False
    if limits.max_blocks is not None and not _fits_blocks(blocks, limits):
        return False
    return limits.max_bytes is None or _size(kind, text, html) <= limits.max_bytes


def _budget(limits: MessageLimits) -> int:
    return limits.max_bytes if limits.max_bytes is not None else 1 << 62


def _text_fits(kind: str, text: str, limits: MessageLimits) -> bool:
    if limits.max_text is not None and len(text) > limits.max_text:
        return False
    return limits.max_bytes is None or _size(kind, text, "") <= limits.max_bytes


def _size(kind: str, text: str, html: str) -> int:
    """Bytes of the text and HTML as they travel in JSON; an edit carries them twice (old and new content)."""
    n = len(json.dumps(text, ensure_ascii=False).encode()) + len(json.dumps(html, ensure_ascii=False).encode())
    return 2 * n if kind == "edit" else n


def _fits_blocks(blocks: list[dict[str, Any]], limits: MessageLimits) -> bool:
    if limits.max_blocks is not None and len(blocks) > limits.max_blocks:
        return False
    return limits.max_text is None or len(_blocks_text(blocks)) <= limits.max_text


def _blocks_text(blocks: list[dict[str, Any]]) -> str:
    parts = []
    for b in blocks:
        if isinstance(b.get("text"), dict):
            parts.append(b["text"].get("text", ""))
        for el in b.get("elements") or []:
            if b.get("type") == "context" and isinstance(el, dict):
                parts.append(el.get("text", ""))
    return "\n".join(p for p in parts if p)


def _plain(html: str) -> str:
    """The text of an HTML page (its `body` on Matrix, for clients that show no HTML)."""
    return htmllib.unescape(_TAG.sub("", _BR.sub("", html)))


def _greedy(items: list[Any], ok: Callable[[list[Any]], bool]) -> list[list[Any]]:
    groups: list[list[Any]] = []
    for item in items:
        if groups and ok(groups[-1] + [item]):
            groups[-1].append(item)
        else:
            groups.append([item])  # a block too big alone still goes (the platform's own cut applies)
    return groups


def _esc(s: str) -> int:
    """Bytes of `s` inside a JSON string."""
    return len(json.dumps(s, ensure_ascii=False).encode()) - 2


def _greedy_lines(s: str, cost: Callable[[str], int], joiner: int, budget: int, ok: Callable[[str], bool],
                  html: bool = False) -> list[str]:
    """Whole lines, as many as fit, per piece; a line that fits nowhere is cut into pieces that do.

    Sizes are added up line by line (measuring every growing piece again would be quadratic); they are exact
    unless a tag spans two lines, so each piece is checked at the end and halved if it is over after all."""
    out: list[str] = []
    cur: list[str] = []
    used = 0
    for line in s.split("\n"):
        c = cost(line)
        if cur and used + joiner + c <= budget:
            cur.append(line)
            used += joiner + c
            continue
        if cur:
            out.append("\n".join(cur))
            cur = []
        if c > budget:
            while line and not ok(line):
                n = _cut_at(line, ok, html)
                out.append(line[:n])
                line = line[n:]
            if not line:
                continue
            c = cost(line)
        cur, used = [line], c
    if cur:
        out.append("\n".join(cur))
    pieces = [q for p in out for q in _ensure(p, ok, html)]
    return [_BR_END.sub("", p) if html else p for p in pieces]


def _ensure(piece: str, ok: Callable[[str], bool], html: bool) -> list[str]:
    if ok(piece):
        return [piece]
    lines = piece.split("\n")
    if len(lines) == 1:
        n = _cut_at(piece, ok, html)
        return [piece[:n], *_ensure(piece[n:], ok, html)] if n < len(piece) else [piece]
    half = len(lines) // 2
    return _ensure("\n".join(lines[:half]), ok, html) + _ensure("\n".join(lines[half:]), ok, html)


_BR_END = re.compile(r"<br\s*/?>\s*\Z")


def _cut_at(line: str, ok: Callable[[str], bool], html: bool) -> int:
    """The longest prefix of `line` that fits (at least one character), not ending inside a tag or entity."""
    lo, hi = 1, len(line)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(line[:mid]):
            lo = mid
        else:
            hi = mid - 1
    if html:
        head = line[:lo]
        for opener, closer in (("<", ">"), ("&", ";")):
            at = head.rfind(opener)
            if at > 0 and closer not in head[at:]:
                lo = min(lo, at)
    space = line.rfind(" ", 0, lo)
    return space + 1 if space > lo // 2 else lo
