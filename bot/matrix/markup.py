"""Matrix mentions and links as the Matrix user saw them, for the other side of the bridge.

A mention is a pill in the HTML body (`<a href="https://matrix.to/#/@bob:example.org">Bob</a>`), while the
plain body may hold the bare user id (`@bob:example.org`) or the name; a link may exist only in the HTML
(`see the <a href="https://x/plan">plan</a>`, body `see the plan`). The plain body stays the text we act on
(it is what commands and markings are read from), completed from the HTML: user ids become display names,
links plain links (`plan (https://x/plan)`), and HTML that a client put in the plain body is read the same way.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

NameOf = Callable[[str], "str | None"]

# A user id written out: `@localpart:server[:port]`, not inside a URL or an e-mail address.
USER_ID = re.compile(r"(?<![\w@/#.:-])@[A-Za-z0-9._=/+-]+:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::\d{1,5})?")
_ANCHOR = re.compile(r"<a\s[^>]*?href\s*=\s*(['\"])(.*?)\1[^>]*>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SCHEME = re.compile(r"^(?:https?://|mailto:)", re.IGNORECASE)


def user_of(href: str) -> str | None:
    """The user id a matrix.to permalink names (`https://matrix.to/#/@bob:example.org`), else None."""
    parts = urlsplit(href)
    if parts.netloc.lower() != "matrix.to" or not parts.fragment:
        return None
    who = unquote(parts.fragment.lstrip("/").split("?", 1)[0])
    return who if who.startswith("@") and ":" in who else None


def anchors(html: str | None) -> list[tuple[str, str]]:
    """The (href, text) of every link of an HTML body, in order."""
    if not html:
        return []
    parser = _Anchors()
    parser.feed(html)
    parser.close()
    return parser.found


def readable(body: str, html: str | None, name_of: NameOf) -> str:
    """`body` with mentions as display names and links as plain links (see the module's doc)."""
    pill_text: dict[str, str] = {}
    links: list[tuple[str, str]] = []
    for href, text in anchors(html):
        user = user_of(href)
        if user:
            pill_text.setdefault(user, text.strip())
        else:
            links.append((href, text.strip()))

    def name(user: str, shown: str | None = None) -> str:
        return name_of(user) or shown or pill_text.get(user) or user

    if _ANCHOR.search(body):  # a client that wrote HTML in the plain body: read it as HTML
        body = _plain(_ANCHOR.sub(lambda m: _anchor_text(unescape(m.group(2)), _plain(m.group(3)), name), body))
    body = USER_ID.sub(lambda m: name(m.group(0)), body)
    for href, text in links:
        body = _with_link(body, href, text)
    return body


def _anchor_text(href: str, text: str, name: Callable[[str, str | None], str]) -> str:
    user = user_of(href)
    if user:
        return name(user, text.strip() or None)
    return _link(href, text.strip())


def _link(href: str, text: str) -> str:
    if not text or text == href or _SCHEME.sub("", href).rstrip("/") == text.rstrip("/"):
        return href.removeprefix("mailto:")
    if urlsplit(href).netloc.lower() == "matrix.to":
        return text  # a room or event permalink: its text names it
    return f"{text} ({href})"


def _with_link(body: str, href: str, text: str) -> str:
    """Bring a link the HTML had into the plain body: markdown `[text](href)` or a bare `text` become
    `text (href)`; a body that already shows the address is left as it is."""
    plain = _link(href, text)
    if plain == text or not text:
        return body
    markdown = f"[{text}]({href})"
    if markdown in body:
        return body.replace(markdown, plain, 1)
    if href in body:
        return body
    i = body.find(text)
    return body if i < 0 else body[:i] + plain + body[i + len(text):]


def _plain(fragment: str) -> str:
    return unescape(_TAG.sub("", re.sub(r"<br\s*/?>", "\n", fragment, flags=re.IGNORECASE)))


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []
        self._skip = 0  # inside <mx-reply>: the quoted message replied to, not this one

    def handle_starttag(self, tag, attrs):
        if tag == "mx-reply":
            self._skip += 1
        elif tag == "a" and not self._skip:
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_endtag(self, tag):
        if tag == "mx-reply" and self._skip:
            self._skip -= 1
        elif tag == "a" and self._href is not None:
            self.found.append((self._href, "".join(self._text)))
            self._href = None

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)
