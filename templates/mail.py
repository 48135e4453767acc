"""The words of an e-mail: the same template as in chat (briefing, handover digest, alert), wrapped in a page with
the marking banner, the inline picture and how to act in chat, and a subject carrying the highest marking inside.

Only words and markup here; the MIME message is built where it is sent (bot/email/).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from markupsafe import Markup

from watchfloor.ioc.markings import Marking, highest, may_show

from . import _SECTION, _env, _squeeze, render

# Which message a chat template makes, for the subject and the page ("briefing" is also the handover's outbox kind).
_WHAT = {"briefing.j2": "briefing", "handover.j2": "handover", "alert.j2": "alert"}
# The banner's words and colour per marking (white text on each passes WCAG AA contrast).
BANNERS = {
    Marking.UNCLASS: ("UNCLASSIFIED", "#007a33"),
    Marking.FOUO: ("UNCLASSIFIED//FOR OFFICIAL USE ONLY", "#502b85"),
    Marking.LES: ("UNCLASSIFIED//LAW ENFORCEMENT SENSITIVE", "#8b1a1a"),
}


# Counts of items withheld from a reader ("2 operations withheld"): a stub too. (A target's `covered_withheld`,
# "covered (details withheld)", is not one: it names no item and keeps a reader from going out for nothing, as in
# every chat room.)
_WITHHELD_COUNTS = ("withheld_ops",)


class AboveClearance(Exception):
    """The data for an e-mail holds an item its reader may not see: the e-mail is not made."""


def marking_inside(data: Any, clearance: Iterable[Marking | str], stubs: bool = False) -> Marking:
    """The highest marking among the items an e-mail shows (every operation, target and conflict view in `data`).

    The last check before anything marked leaves for an address: an item above `clearance` raises
    AboveClearance, and so does a "details withheld" stub unless `stubs` (a watch address, read like the watch
    rooms, is told what exists elsewhere; an agency's address is not, not even that something LES exists)."""
    clearance = frozenset(Marking(m) for m in clearance)
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if not stubs and any(node.get(key) for key in _WITHHELD_COUNTS):
                raise AboveClearance("items withheld would be counted")
            if "marking" in node and "ref" in node:
                if node.get("withheld"):
                    if not stubs:
                        raise AboveClearance(f"{node['ref']} ({node['marking']}) would be named")
                    return
                if not may_show(node["marking"], clearance):
                    raise AboveClearance(f"{node['ref']} is {node['marking']}")
                found.append(node["marking"])
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(data)
    return highest(found)


def render_email(template: str, data: dict[str, Any], clearance, *, kind: str, stubs: bool = False,
                 picture_cid: str | None = None) -> dict[str, Any]:
    """`subject`, `text` and `html` (a whole page) of the e-mail made of a chat template's rendering, and its
    `marking`. Raises AboveClearance when `data` holds anything the reader may not see."""
    marking = marking_inside(data, clearance, stubs)
    what = _WHAT.get(template, kind)
    if what == "alert" and kind == "escalation":
        what = "escalation"
    banner, colour = BANNERS[marking]
    subject = " ".join(render("email_subject.j2", what=what, marking=marking.value, **data).text.split())
    refs = [cf["ref"] for cf in data.get("raised", []) if not cf.get("withheld")] if what in ("alert", "escalation") \
        else []
    page = {"what": what, "subject": subject, "marking": marking.value, "banner": banner, "colour": colour,
            "picture_cid": picture_cid, "refs": refs, "place": data.get("z") or data.get("zone")}
    text = render(template, **data).text
    html_sections = [Markup(_squeeze(p.strip("\n")).replace("\n", "<br>\n"))
                     for p in _env("html").get_template(template).render(**data).split(_SECTION) if p.strip()]
    return {
        "subject": subject,
        "text": _text_page(_env("text").get_template("email.j2").render(body=text, **page)),
        "html": _env("html").get_template("email.j2").render(sections=html_sections, **page),
        "marking": marking.value,
    }


def _text_page(s: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in s.strip().splitlines())) + "\n"
