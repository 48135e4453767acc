"""The briefing's picture: the day's operations on a timeline, one lane per agency, conflicts marked in red.

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_COLOURS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f", "#e377c2", "#ff7f0e"]
_CONFLICT = "#d62728"
# pyplot's global state is not thread-safe; Figure objects are, but the font cache fills on first use.
_draw_lock = threading.Lock()


@dataclass
class Picture:
    png: bytes
    lanes: list[str]
    filename: str

    def attachment(self) -> dict[str, str]:
        """The outbox payload's `image`, which the Slack and Matrix adapters upload."""
        return {"filename": self.filename, "data_b64": base64.b64encode(self.png).decode("ascii")}


def timeline(data: dict[str, Any]) -> Picture | None:
    """The picture for a briefing's data (as `build_briefing` returns it), or None when no operation is shown."""
    by_agency: dict[str, list[dict]] = data["by_agency"]
    if not any(by_agency.values()):
        return None
    zone, tz = data["z"], data["tz"]
    # In UTC: subtracting two times of the same zone would give wall-clock hours, wrong on DST days.
    day_start: datetime = data["day"][0].astimezone(UTC)
    day_end: datetime = data["day"][1].astimezone(UTC)
    hours = (day_end - day_start).total_seconds() / 3600  # 23 or 25 on DST days
    conflicted = {op["ref"] for cf in data["conflicts"] if not cf["withheld"] for op in cf.get("ops", [])
                  if not op["withheld"]}
    lanes = list(by_agency)

    # matplotlib costs most of a second to import: only commands that draw pay for it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 1.0 + 0.5 * len(lanes)), dpi=72)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for lane, agency in enumerate(lanes):
        bars, edges, widths = [], [], []
        for op in by_agency[agency]:
            a = max(0.0, (op["start"] - day_start).total_seconds() / 3600)
            b = min(hours, (op["end"] - day_start).total_seconds() / 3600)
            if b <= a:
                continue
            hot = op["ref"] in conflicted
            bars.append((a, b - a))
            edges.append(_CONFLICT if hot else "white")
            widths.append(2.5 if hot else 0.5)
            if hot:  # name the operations that need a decision; labels are most of the drawing time
                ax.text(a + 0.05, lane, op["ref"], va="center", ha="left", fontsize=7, color="black",
                        clip_on=True)
        # One collection per lane: drawing cost grows with artists, not with bars.
        ax.broken_barh(bars, (lane - 0.35, 0.7), facecolors=_COLOURS[lane % len(_COLOURS)], alpha=0.85,
                       edgecolors=edges, linewidths=widths)
    for cf in data["conflicts"]:
        ops = [op for op in cf.get("ops", []) if not op["withheld"]] if not cf["withheld"] else []
        if len(ops) == 2:
            a = max(ops[0]["start"], ops[1]["start"])
            b = min(ops[0]["end"], ops[1]["end"])
            lo, hi = ((a - day_start).total_seconds() / 3600, (b - day_start).total_seconds() / 3600)
            if hi > lo and hi > 0 and lo < hours:
                ax.axvspan(max(lo, 0), min(hi, hours), color=_CONFLICT, alpha=0.12)
    if day_start <= data["at"] <= day_end:
        ax.axvline((data["at"] - day_start).total_seconds() / 3600, color="black", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(lanes)), labels=lanes)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlim(0, hours)
    ticks = list(range(0, int(hours) + 1, 3))
    ax.set_xticks(ticks, labels=[(day_start + timedelta(hours=h)).astimezone(tz).strftime("%H:%M") for h in ticks],
                  fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    day = day_start.astimezone(tz)
    ax.set_title(f"{zone.code} operations {day:%a %d %b %Y} ({day:%Z}) — red: in conflict", fontsize=9)
    # Fixed margins rather than tight_layout, which draws the whole figure once more just to measure it.
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.6 / fig.get_figheight(), top=1 - 0.35 / fig.get_figheight())
    buf = io.BytesIO()
    with _draw_lock:
        # The lane names travel in the PNG itself, so a reader (or a test) can tell what was drawn.
        fig.savefig(buf, format="png", metadata={"Title": f"{zone.code} {day:%Y-%m-%d}", "Lanes": ",".join(lanes)})
    return Picture(buf.getvalue(), lanes, f"briefing-{zone.code}-{day:%Y-%m-%d}.png")


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
