"""The briefing's picture: the watch's operations on a timeline, conflicts marked in red — drawn by the rules of
the operating picture's own timeline: the watch's horizon (6 hours back, 18 ahead, "now" marked), each agency in
its colour of the zone (with a legend), operations of one agency that overlap in time each on a line of its own,
overdue ones shown so, and no label cut at the edge.

Drawn from the same views the briefing text uses (already filtered by the room's clearance), so the picture
never shows more than the text beside it. Agg backend: no display, safe in threads and containers.
"""
from __future__ import annotations

import base64
import io
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from watchfloor.commands.cop_feed import CONFLICT_COLOR, colour, ink, lines_for
from watchfloor.ioc.horizon import horizon
from watchfloor.ioc.overdue import is_overdue

LABEL_PT = 7           # the bars' labels, in points
CHAR_W_IN = 0.075      # a label character's width at LABEL_PT at most, in inches
LABELLED_MAX = 120     # past this many bars only those in conflict are named: labels are most of the drawing time
# pyplot's global state is not thread-safe; Figure objects are, but the font cache fills on first use.
_draw_lock = threading.Lock()


@dataclass
class Picture:
    png: bytes
    lanes: list[str]
    filename: str
    # where each bar's label and the plot lie across the picture, in pixels: a label is never cut at the edge
    labels: dict[str, tuple[float, float]] = field(default_factory=dict)
    plot: tuple[float, float] = (0.0, 0.0)

    def attachment(self) -> dict[str, str]:
        """The outbox payload's `image`, which the Slack and Matrix adapters upload."""
        return {"filename": self.filename, "data_b64": base64.b64encode(self.png).decode("ascii")}


@dataclass
class _Item:
    op: dict
    agency: str
    a: float  # hours from the horizon's start
    b: float
    late: float  # an overdue operation: up to now
    label: str
    label_at: float
    label_side: str  # "in", "right" or "left"
    left: float
    right: float
    hot: bool


def timeline(data: dict[str, Any], colours: dict[str, str] | None = None) -> Picture | None:
    """The picture for a briefing's data (as `build_briefing` returns it), or None when no operation is shown.
    `colours`: each agency's colour in the zone (commands.cop_feed.agency_colours, as on the page); without them
    the lanes take the palette in order."""
    by_agency: dict[str, list[dict]] = data["by_agency"]
    if not any(by_agency.values()):
        return None
    zone, tz, at = data["z"], data["tz"], data["at"]
    # In UTC: subtracting two times of the same zone would give wall-clock hours, wrong on DST days.
    h0, h1 = (t.astimezone(UTC) for t in horizon(at.astimezone(UTC)))
    hours = (h1 - h0).total_seconds() / 3600
    now_h = (at.astimezone(UTC) - h0).total_seconds() / 3600
    conflicted = {op["ref"] for cf in data["conflicts"] if not cf["withheld"] for op in cf.get("ops", [])
                  if not op["withheld"]}
    agencies = sorted(by_agency)
    colours = {a: (colours or {}).get(a) or colour(i) for i, a in enumerate(agencies)}

    width_in, left_in, right_in = 10.0, 0.8, 0.1
    per_hour_in = (width_in - left_in - right_in) / hours
    label_all = sum(len(v) for v in by_agency.values()) <= LABELLED_MAX

    def item(agency: str, op: dict) -> _Item | None:
        a = (op["start"] - h0).total_seconds() / 3600
        b = (op["end"] - h0).total_seconds() / 3600
        overdue = is_overdue(op["status"], op["end"], at)
        late = max(b, now_h) if overdue else b
        if late <= 0 or a >= hours:
            return None
        a, b, late = max(a, 0.0), max(min(b, hours), max(a, 0.0)), min(late, hours)
        hot = op["ref"] in conflicted
        label = (op["ref"] + (" overdue" if overdue else "")) if (label_all or hot) else ""
        w = (len(label) * CHAR_W_IN + 0.06) / per_hour_in if label else 0.0
        if not label or b - a >= w:
            return _Item(op, agency, a, b, late, label, a + 0.03 / per_hour_in, "in", a, late, hot)
        if late + w <= hours:
            return _Item(op, agency, a, b, late, label, late + 0.03 / per_hour_in, "right", a, late + w, hot)
        return _Item(op, agency, a, b, late, label, a - 0.03 / per_hour_in, "left", a - w, late, hot)

    rows: list[tuple[str, list[_Item], list[int], int]] = []
    for agency in agencies:
        items = [i for i in (item(agency, op) for op in by_agency[agency]) if i is not None]
        lines, count = lines_for([(i.left, i.right) for i in items], gap=0.05)
        rows.append((agency, items, lines, count))
    total = sum(count for *_, count in rows)

    # matplotlib costs most of a second to import: only commands that draw pay for it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    height_in = 1.35 + 0.32 * total
    fig = Figure(figsize=(width_in, height_in), dpi=72)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ticks, tick_labels, y = [], [], 0
    for agency, items, lines, count in rows:
        ticks.append(y + (count - 1) / 2)
        tick_labels.append(agency)
        if y:
            ax.axhline(y - 0.5, color="#999999", linewidth=0.6)
        fill = colours[agency]
        # One collection per line: drawing cost grows with artists, not with bars.
        for line in range(count):
            mine = [i for i, at_line in zip(items, lines) if at_line == line]
            ax.broken_barh([(i.a, max(i.b - i.a, 0.02)) for i in mine], (y + line - 0.35, 0.7), facecolors=fill,
                           alpha=0.9, edgecolors=[CONFLICT_COLOR if i.hot else "white" for i in mine],
                           linewidths=[2.5 if i.hot else 0.5 for i in mine])
            late = [(i.b, i.late - i.b) for i in mine if i.late > i.b]
            if late:  # overdue: past its end and not closed, up to now
                ax.broken_barh(late, (y + line - 0.35, 0.7), facecolors="white", edgecolors=CONFLICT_COLOR,
                               linewidths=1.0, hatch="////")
        for i, line in zip(items, lines):
            if i.label:
                ax.text(i.label_at, y + line, i.label, va="center", ha="right" if i.label_side == "left" else "left",
                        fontsize=LABEL_PT, color=ink(fill) if i.label_side == "in" and not i.hot else "black")
        y += count
    for cf in data["conflicts"]:
        ops = [op for op in cf.get("ops", []) if not op["withheld"]] if not cf["withheld"] else []
        if len(ops) == 2:
            a = (max(ops[0]["start"], ops[1]["start"]) - h0).total_seconds() / 3600
            b = (min(ops[0]["end"], ops[1]["end"]) - h0).total_seconds() / 3600
            if b > a and b > 0 and a < hours:
                ax.axvspan(max(a, 0), min(b, hours), color=CONFLICT_COLOR, alpha=0.12)
    ax.axvline(now_h, color="black", linewidth=1.5)
    ax.text(now_h, -0.62, "now", ha="center", va="bottom", fontsize=7, fontweight="bold")
    ax.set_yticks(ticks, labels=tick_labels, fontsize=8)
    ax.set_ylim(total - 0.5, -0.75)
    ax.set_xlim(0, hours)
    xticks, xlabels = [], []
    t = h0.replace(minute=0) + timedelta(hours=1)
    while t < h1:
        local = t.astimezone(tz)
        if local.hour % 3 == 0:
            xticks.append((t - h0).total_seconds() / 3600)
            xlabels.append(f"{local:%a} 00:00" if local.hour == 0 else f"{local.hour:02d}:00")
        t += timedelta(hours=1)
    ax.set_xticks(xticks, labels=xlabels, fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    start, end = h0.astimezone(tz), h1.astimezone(tz)
    ax.set_title(f"{zone.code} operations {start:%a %d %b %H:%M} – {end:%a %d %b %H:%M} ({end:%Z}), "
                 "6 hours back, 18 ahead — red: in conflict", fontsize=9)
    ax.legend(handles=[Patch(facecolor=colours[a], edgecolor="black", label=a) for a in agencies],
              loc="upper center", bbox_to_anchor=(0.5, -0.6 / height_in * 1.6), ncol=min(len(agencies), 9),
              fontsize=7, frameon=False, handlelength=1.2)
    # Fixed margins rather than tight_layout, which draws the whole figure once more just to measure it.
    fig.subplots_adjust(left=left_in / width_in, right=1 - right_in / width_in, bottom=0.75 / height_in,
                        top=1 - 0.35 / height_in)
    buf = io.BytesIO()
    day = at.astimezone(tz)
    with _draw_lock:
        # The lane names and colours travel in the PNG itself, so a reader (or a test) can tell what was drawn.
        fig.savefig(buf, format="png", metadata={
            "Title": f"{zone.code} {day:%Y-%m-%d}", "Lanes": ",".join(agencies),
            "Colours": ",".join(f"{a}={colours[a]}" for a in agencies),
            "Lines": ",".join(f"{agency}={count}" for agency, *_, count in rows)})
        renderer = fig.canvas.get_renderer()
        box = ax.get_window_extent(renderer)
        labels = {t.get_text(): (t.get_window_extent(renderer).x0, t.get_window_extent(renderer).x1)
                  for t in ax.texts if t.get_text().startswith("OP-")}
    return Picture(buf.getvalue(), agencies, f"briefing-{zone.code}-{day:%Y-%m-%d}.png", labels, (box.x0, box.x1))


def picture_dir() -> Path:
    """Where the console room writes briefing pictures: $WATCHFLOOR_PICTURE_DIR, else the temp directory."""
    return Path(os.environ.get("WATCHFLOOR_PICTURE_DIR") or tempfile.gettempdir())


def save(image: dict[str, str], directory: Path | None = None) -> Path:
    """Write an outbox `image` to a file and return its path."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", image.get("filename") or "briefing.png")
    path = (directory or picture_dir()) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(image["data_b64"]))
    return path
