"""Tokenizing chat text into a command: words and key=value pairs, quoted values, `!` and `/` prefixes.

Phones turn straight quotes into curly ones, so both are accepted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import CommandError

PREFIXES = ("!", "/")
COMMANDS = ("op", "target", "conflicts", "brief", "zone", "help")
ALIASES = {"watchfloor": "help", "ops": "op", "targets": "target", "conflict": "conflicts", "briefing": "brief"}
MAX_COMMAND_CHARS = 4000

# opening quote -> the characters that may close it. Phones pick the curly form from the character before,
# so after `=` they often type a *closing* curly quote to open (`note=”pilot boards”`).
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d\u201c", "\u201d": "\u201d\u201c", "\u201e": "\u201d\u201c",
           "\u2018": "\u2019\u2018", "\u2019": "\u2019\u2018"}
_KEY = re.compile(r"^[a-z][a-z_]{0,23}$")
_COMMAND_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Token:
    text: str
    quoted: bool = False


@dataclass
class ParsedCommand:
    name: str
    words: list[Token] = field(default_factory=list)  # positional words after the command name
    pairs: dict[str, Token] = field(default_factory=dict)
    raw: str = ""

    @property
    def action(self) -> str | None:
        return self.words[0].text.lower() if self.words else None


def is_command(text: str) -> bool:
    """A chat message is a command when it starts with `!word` or `/word`."""
    t = text.lstrip()
    if len(t) < 2 or t[0] not in PREFIXES:
        return False
    first = t[1:].split(maxsplit=1)
    return bool(first) and bool(_COMMAND_WORD.match(first[0]))


def tokenize(text: str) -> list[tuple[str | None, Token]]:
    """Split into (key or None, token). Raises CommandError on an unclosed quote."""
    out: list[tuple[str | None, Token]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        key: str | None = None
        buf: list[str] = []
        quoted = False
        while i < n and not text[i].isspace():
            ch = text[i]
            # a quote opens only at the start of a word or value: mid-word it is an apostrophe (O'BRIEN)
            if ch in _QUOTES and not buf:
                ends = [e for e in (text.find(c, i + 1) for c in _QUOTES[ch]) if e >= 0]
                end = min(ends) if ends else -1
                if end < 0:
                    name = key or "".join(buf) or "text"
                    raise CommandError(name, "a quote is not closed")
                buf.append(text[i + 1:end])
                quoted = True
                i = end + 1
                continue
            if ch == "=" and key is None and not quoted and _KEY.match("".join(buf).lower()):
                key = "".join(buf).lower()
                buf = []
                i += 1
                continue
            buf.append(ch)
            i += 1
        out.append((key, Token("".join(buf), quoted)))
    return out


def parse(text: str) -> ParsedCommand:
    """Parse a command message (with or without its prefix)."""
    if len(text) > MAX_COMMAND_CHARS:
        raise CommandError("command", f"longer than {MAX_COMMAND_CHARS} characters")
    body = text.strip()
    if body[:1] in PREFIXES:
        body = body[1:]
    if any(ord(c) < 32 and c not in "\t\n\r" for c in body) or "\x7f" in body:
        raise CommandError("command", "contains control characters")
    tokens = tokenize(body)
    if not tokens or tokens[0][0] is not None or tokens[0][1].quoted:
        raise CommandError("command", "missing; try !help")
    name = tokens[0][1].text.lower()
    name = ALIASES.get(name, name)
    if name not in COMMANDS:
        raise CommandError("command", f"unknown command '{_clip(tokens[0][1].text)}'; try !help")
    cmd = ParsedCommand(name=name, raw=text.strip())
    for key, tok in tokens[1:]:
        if key is None:
            cmd.words.append(tok)
        elif key in cmd.pairs:
            raise CommandError(key, "given twice")
        else:
            cmd.pairs[key] = tok
    return cmd


def _clip(s: str, n: int = 24) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
