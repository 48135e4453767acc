"""Tokenizing chat text into a command: words and key=value pairs, quoted values, `!` and `/` prefixes.

Phones turn straight quotes into curly ones, so both are accepted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import CommandError

PREFIXES = ("!", "/")
COMMANDS = ("op", "target", "conflicts", "brief", "zone", "help", "vessel", "arrivals", "cop", "watch", "handover")
ALIASES = {"watchfloor": "help", "ops": "op", "targets": "target", "conflict": "conflicts", "briefing": "brief",
           "vessels": "vessel", "arrival": "arrivals"}
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


# Words that follow a command name (its actions, filters): after a near miss of a name they mark a mistyped
# command rather than talk (`!taget list`, not `!top priority`).
_ACTION_WORDS = frozenset({"log", "list", "show", "update", "cancel", "done", "nominate", "endorse", "assign",
                           "close", "all", "ack", "resolve", "snooze", "now", "today", "active", "open", "on",
                           "off", "calendar", "revoke", "24h", "96h"})
_PAIR = re.compile(r"^[a-z][a-z_]{0,23}=", re.IGNORECASE)
_REF = re.compile(r"^(?:op|tgt|cf)-?\d+$", re.IGNORECASE)


def _first_word(text: str) -> tuple[str, list[str]] | None:
    t = text.lstrip()
    if len(t) < 2 or t[0] not in PREFIXES:
        return None
    words = t[1:].split()
    if not words or not _COMMAND_WORD.match(words[0]):
        return None
    return words[0].lower(), words[1:]


def _known(word: str) -> str | None:
    name = ALIASES.get(word, word)
    return name if name in COMMANDS else None


def _distance(a: str, b: str) -> int:
    """Edit distance counting a swap of neighbours as one edit (optimal string alignment): typing slips."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def suggestion(word: str, rest: list[str]) -> str | None:
    """The command a near miss (`!taget list`, `!opp log ... at=..`) most likely meant, or None for talk.

    A near miss of a name alone is not enough (`!top priority`, `!ok`): the next word must be an action or an
    id, or a key=value must follow, as only a command would have them."""
    if len(word) < 3:  # one letter off `op` is half of English (`!ok all clear`, `!on it`)
        return None
    if not rest or not (rest[0].lower() in _ACTION_WORDS or _REF.match(rest[0]) or any(_PAIR.match(w) for w in rest)):
        return None
    best: tuple[int, str] | None = None
    for name in (*COMMANDS, *ALIASES):
        d = _distance(word, name)
        if 0 < d <= (1 if len(name) < 8 else 2) and (best is None or d < best[0]):
            best = (d, ALIASES.get(name, name))
    return best[1] if best else None


def is_command(text: str) -> bool:
    """The one decision, for the engine, the bridge and every adapter: is this message for the bot?

    `!word` or `/word` where the word names a command, or is a likely typo of one (answered to the sender alone
    with a hint, and not bridged: it carries a command's arguments, which may be marked details). Any other
    message, `!URGENT pilot refused boarding` included, is talk: bridged, never answered."""
    first = _first_word(text)
    if first is None:
        return False
    word, rest = first
    return _known(word) is not None or suggestion(word, rest) is not None


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
        guess = suggestion(name, [t.text if k is None else f"{k}=" for k, t in tokens[1:]])
        hint = f"did you mean !{guess}?" if guess else "try !help"
        raise CommandError("command", f"unknown command '{_clip(tokens[0][1].text)}'; {hint}")
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
