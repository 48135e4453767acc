"""Slack's message markup, both ways.

Inbound, Slack writes mentions, channel links and links as `<...>` tokens and escapes `&`, `<` and `>`; people
on the other side of the bridge (and the command grammar) must read what the Slack user saw: names and plain
links. Outbound, text we post must never be read by Slack as markup: a relayed `<!channel>` would ping everyone.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

MAX_TEXT = 39_000  # Slack cuts message text at 40,000 characters
_TOKEN = re.compile(r"<([^<>\n]*)>")
# Links Slack made of what the user typed (`example.com`, `a@b.org`) keep the user's words.
_SCHEME = re.compile(r"^(?:https?://|mailto:)", re.IGNORECASE)

Lookup = Callable[[str], Awaitable[str | None]]


async def readable(text: str, user_name: Lookup, channel_name: Lookup) -> str:
    """Slack's markup as the Slack user saw it: `<@U1>` → `@Dana`, `<#C1|joint>` → `#joint`,
    `<https://x|plan>` → `plan (https://x)`, `<!here>` → `@here`; then the escapes undone."""
    if "<" not in text:
        return unescape(text)
    parts: list[str] = []
    last = 0
    for m in _TOKEN.finditer(text):
        parts.append(text[last:m.start()])
        parts.append(await _token(m.group(1), user_name, channel_name))
        last = m.end()
    parts.append(text[last:])
    return unescape("".join(parts))


async def _token(inner: str, user_name: Lookup, channel_name: Lookup) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return "@" + (await user_name(target[1:]) or label or target[1:])
    if target.startswith("#"):
        return "#" + (label or await channel_name(target[1:]) or target[1:])
    if target.startswith("!"):
        # `<!here>`, `<!channel>`, `<!subteam^S1|@team>`, `<!date^...|fallback>`: what Slack shows.
        word = target[1:].split("^", 1)[0]
        if word in ("here", "channel", "everyone") or not label:
            return "@" + word
        return label
    if not label or label == target:
        return target.removeprefix("mailto:")
    if _SCHEME.sub("", target) == label:
        return label
    return f"{label} ({target})"


def unescape(text: str) -> str:
    """Slack sends `&`, `<` and `>` escaped: other platforms (and the marking rule: `&gt; [LES]` is a quote)
    must see the characters."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Plain text as Slack must receive it: no `<...>` read as a mention or link, no entity read as another."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
