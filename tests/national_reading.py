"""Reading what the national-scale load (tests/national_load.py) left: every room as a user reads it (Slack channels
as the stand-in shows them, Matrix timelines), joined with the outbox rows each post names (Slack message metadata,
Matrix `org.watchfloor.outbox`) and with the replicas' logs (when each command was handled); turned into the
figures and the lost-or-doubled checks of `Report`.
"""
from __future__ import annotations

import json
import math
import os
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the run this reads (tests/national_load.py imports this module)
    from tests.national_load import National, Scale


SETTLE = 30.0  # seconds after the last briefing and after the kill before memory is judged


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def pg(url: str):
    """An autocommit psycopg connection to the SQLAlchemy URL's database."""
    import psycopg

    return psycopg.connect(url.replace("+psycopg", ""), autocommit=True)


# ------------------------------------------------------------------------------------------------ the report


@dataclass
class Check:
    """One promise, counted: `expected` things, of which `once` were shown once, `lost` never, `doubled` more."""
    name: str
    expected: int = 0
    once: int = 0
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.lost and not self.doubled

    def count(self, shown: int, what: str) -> None:
        """One expected thing, shown `shown` times."""
        self.expected += 1
        if shown == 1:
            self.once += 1
        elif shown == 0:
            self.lost.append(what)
        else:
            self.doubled.append(f"{what} x{shown}")

    def line(self) -> str:
        bad = "" if self.ok else f" — lost {self.lost[:8]} doubled {self.doubled[:8]}"
        return (f"{self.name}: {self.once}/{self.expected} once, lost {len(self.lost)}, doubled {len(self.doubled)}"
                f"{bad}{(' (' + self.note + ')') if self.note else ''}")


@dataclass
class Report:
    scale: Scale
    lines: list[str] = field(default_factory=list)      # the figures, printed in order
    checks: list[Check] = field(default_factory=list)
    memory: list[tuple[str, str, int, float, float]] = field(default_factory=list)  # judged series:
    #   (replica, role, pid, MB after the warm-up, MB at the end)
    memory_flat: bool = True
    goals: list[tuple[str, bool]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # what went wrong in the run itself (not a figure)

    def ok(self) -> bool:
        """Nothing lost or doubled (the run's correctness; speed goals are printed, not judged here)."""
        return all(c.ok for c in self.checks) and not self.problems

    def summary(self) -> str:
        out = list(self.lines)
        out.append("-- lost or doubled (each as a user reads the rooms)")
        out += [c.line() for c in self.checks]
        out.append("-- goals")
        out += [f"{what}: {'met' if met else 'NOT met'}" for what, met in self.goals]
        out += [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(out)


# ------------------------------------------------------------------------------------------------ reading


@dataclass
class Post:
    platform: str
    room: str                 # the platform's room id
    row: int | None           # the outbox row it names (None: carries no mark)
    page: int
    at: float                 # when the platform took it (Slack: the stand-in's record; Matrix: origin_server_ts)
    text: str
    reply_to: str = ""        # Matrix: the event it answers
    edit: bool = False        # Matrix m.replace: a change of a message already shown


class Reading:
    """Everything the rooms show, joined with the outbox, turned into the report's figures and checks."""

    def __init__(self, run: National):
        self.run, self.s = run, run.s
        self.r = run.roster
        with pg(run.pg_url) as conn:
            self.rows = {row[0]: row for row in conn.execute(
                "SELECT id, room, kind, status, created_at, sent_at, dedupe_key, payload::json->>'reply_to', "
                "payload::json->>'ephemeral', payload::json->'conflicts', payload::json->>'text', "
                "payload::json->>'user', (payload::json->'image') IS NOT NULL, payload::json->>'zone' FROM outbox")}
            self.conflicts = conn.execute(
                "SELECT id, zone_code, kind, escalated_at IS NOT NULL FROM conflict ORDER BY id").fetchall()
        self.posts: list[Post] = []
        self.ephemeral: list[tuple[str, str, str, float]] = []  # Slack: (channel, user, text, time)
        self.pictures: Counter = Counter()                      # room -> pictures shown
        self.matrix_events: dict[str, dict] = {}                # event id -> event (the commands' own too)
        self._read_slack()
        self._read_matrix()
        self.handled: dict[str, float] = {}  # command event id -> when a replica logged it handled
        for r in run.group:
            if not r.log.exists():
                continue
            for line in r.log.read_text(errors="replace").splitlines():
                if '"event": "command"' not in line:
                    continue
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                at = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
                self.handled[e.get("event_id")] = min(at, self.handled.get(e.get("event_id"), at))

    def _read_slack(self) -> None:
        calls = self.run.api.calls
        when = {}
        for c in calls:
            if c.method == "chat.postMessage" and c.status == 200:
                mark = ((c.params.get("metadata") or {}).get("event_payload") or {})
                if mark.get("outbox_id") is not None:
                    when.setdefault((int(mark["outbox_id"]), int(mark.get("page") or 1)), c.time)
            elif c.method == "chat.postEphemeral" and c.status == 200:
                self.ephemeral.append((c.params.get("channel", ""), c.params.get("user", ""),
                                       c.params.get("text", ""), c.time))
            elif c.method == "files.completeUploadExternal" and c.status == 200:
                self.pictures[c.params.get("channel_id", "")] += 1
        for ch in self.r.slack_rooms():
            for m in self.run.api.messages_in(ch):
                mark = ((m.get("metadata") or {}).get("event_payload") or {})
                row = int(mark["outbox_id"]) if mark.get("outbox_id") is not None else None
                page = int(mark.get("page") or 1)
                self.posts.append(Post("slack", ch, row, page, when.get((row, page), 0.0),
                                       (m.get("text") or "") + json.dumps(m.get("blocks") or [])))

    def _timeline(self, room: str) -> list[dict]:
        events, since = [], None
        while True:
            q = {"dir": "b", "limit": 500, **({"from": since} if since else {})}
            resp = self.run.synapse.request("GET", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/messages",
                                            token=self.r.owner["access_token"], query=q)
            chunk = resp.get("chunk", [])
            events.extend(chunk)
            since = resp.get("end")
            if not chunk or not since:
                return list(reversed(events))

    def _read_matrix(self) -> None:
        bot = self.r.bot["user_id"]
        for room in self.r.matrix_rooms():
            for e in self._timeline(room):
                if e.get("type") != "m.room.message":
                    continue
                self.matrix_events[e["event_id"]] = e
                if e["sender"] != bot:
                    continue
                content = e.get("content") or {}
                if content.get("msgtype") == "m.image":
                    self.pictures[room] += 1
                    continue
                rel = content.get("m.relates_to") or {}
                row = content.get("org.watchfloor.outbox")
                self.posts.append(Post("matrix", room, row if isinstance(row, int) else None,
                                       int(content.get("org.watchfloor.outbox_page") or 1),
                                       e["origin_server_ts"] / 1000, content.get("body") or "",
                                       (rel.get("m.in_reply_to") or {}).get("event_id", ""),
                                       rel.get("rel_type") == "m.replace"))

    # ---------------------------------------------------------------------------------------- checks

    def _shown(self) -> Counter:
        return Counter((p.row, p.page) for p in self.posts if p.row is not None)

    def check_rows(self) -> Check:
        """Every outbox row the bot marked sent is shown exactly once where it went (page 1; its other pages
        once each); no shown post names a row that is not sent."""
        shown = self._shown()
        c = Check("outbox rows sent → shown where they went")
        for row in self.rows.values():
            rid, room, kind, status, ephemeral = row[0], row[1], row[2], row[3], row[8] == "true"
            platform = room.split(":", 1)[0]
            if platform == "console":
                continue  # a zone's console room: stored as sent, read by the consoles themselves
            if platform == "slack" and (kind in ("edit", "redact") or (kind == "reply" and ephemeral)):
                continue  # a chat.update, a chat.delete, a chat.postEphemeral: nothing of its own in the channel
            if platform == "matrix" and kind == "redact":
                continue
            if status != "sent":
                if status == "dead":
                    c.lost.append(f"row {rid} dead ({kind} to {room})")
                elif status == "pending":
                    c.lost.append(f"row {rid} still pending ({kind} to {room})")
                continue
            c.count(shown.get((rid, 1), 0), f"row {rid} ({kind} to {room})")
        for (rid, page), n in shown.items():
            if page > 1 and n > 1:
                c.doubled.append(f"row {rid} page {page} x{n}")
            if rid not in self.rows:
                c.doubled.append(f"row {rid} shown, not in the outbox")
        return c

    def answers(self) -> tuple[Check, dict[int, float]]:
        """Every command answered exactly once, in its own room; and each answer's round trip (seconds)."""
        by_reply: dict[str, list[float]] = defaultdict(list)
        rows = self.rows
        for p in self.posts:
            if p.edit or p.page != 1:
                continue
            if p.platform == "matrix" and p.reply_to:
                row = rows.get(p.row)
                if row is None or row[2] == "reply":
                    by_reply[p.reply_to].append(p.at)
            elif p.platform == "slack" and p.row in rows and rows[p.row][2] == "reply":
                by_reply[rows[p.row][7]].append(p.at)
        # Ephemeral Slack answers (refusals) carry no mark: matched to their rows by channel and user, in order.
        times: dict[tuple[str, str], list[float]] = defaultdict(list)
        for ch, user, _text, t in self.ephemeral:
            times[(ch, user)].append(t)
        for row in sorted(rows.values(), key=lambda row: row[0]):
            if row[2] == "reply" and row[8] == "true" and row[1].startswith("slack:"):
                key = (row[1].split(":", 1)[1], (row[11] or "").removeprefix("slack:"))
                if times.get(key):
                    by_reply[row[7]].append(times[key].pop(0))
        c = Check("commands answered")
        rtt: dict[int, float] = {}
        for cmd in self.run.commands:
            if cmd.failed:
                c.lost.append(f"#{cmd.n} never handed over: {cmd.failed}")
                continue
            got = by_reply.get(cmd.event_id, [])
            c.count(len(got), f"#{cmd.n} {cmd.platform} {cmd.text[:40]!r}")
            if got:
                start = cmd.sent_at
                if cmd.platform == "matrix" and cmd.event_id in self.matrix_events:
                    start = self.matrix_events[cmd.event_id]["origin_server_ts"] / 1000
                rtt[cmd.n] = min(got) - start
        return c, rtt

    def _rows_shown_in(self, room_key: str, kind: str) -> list[tuple]:
        """The outbox rows of `kind` to `room_key`, each with the times it is shown (page 1, not an edit)."""
        shown = self._shown()
        return [(row, shown.get((row[0], 1), 0)) for row in self.rows.values()
                if row[1] == room_key and row[2] == kind]

    def alerts(self) -> tuple[Check, Check]:
        """Every conflict alerted once in each watch room of its zone; every escalated one once in each of its
        district's rooms."""
        from watchfloor.ioc.zones import get_zone

        zones = {z.code: z for z in self.r.zones}
        alerts, escalations = Check("conflicts alerted in each watch room"), Check("escalations in each district room")
        shown = self._shown()
        listed: dict[tuple[str, int], int] = Counter()  # (room key, conflict) -> alert posts shown listing it
        for row in self.rows.values():
            if row[2] in ("alert", "escalation") and row[9]:
                for cf in row[9]:
                    listed[(row[1], row[2], int(cf))] += shown.get((row[0], 1), 0)
        for cid, zone, kind, escalated in self.conflicts:
            z = zones.get(zone)
            if z is None:
                continue
            for room in z.rooms("watch"):
                alerts.count(listed.get((room, "alert", cid), 0), f"CF-{cid} in {room}")
            d = self.r.districts[get_zone(zone).district]
            for room in (f"slack:{d['slack']}", f"matrix:{d['matrix']}"):
                n = listed.get((room, "escalation", cid), 0)
                if escalated:
                    escalations.count(n, f"CF-{cid} in {room}")
                elif n:
                    escalations.doubled.append(f"CF-{cid} x{n} in {room}, never escalated")
        return alerts, escalations

    def briefings(self) -> tuple[Check, Check]:
        """Every zone's briefing once in each of its rooms: the posts shown of the zone's briefing rows (whatever
        their dedupe keys), each reading as a morning briefing; and its timeline picture once."""
        texts, pictures = Check("briefings in each zone room"), Check("briefing pictures in each zone room")
        shown = self._shown()
        for z in self.r.zones:
            for room in z.rooms("joint") + z.rooms("watch"):
                rows = {row[0]: row for row in self.rows.values()
                        if row[2] == "briefing" and row[1] == room and row[13] == z.code}
                posts = [p for p in self.posts if p.row in rows and p.page == 1 and not p.edit]
                readable = [p for p in posts if "Morning briefing" in p.text]
                texts.count(len(readable), f"{z.code} {room}")
                if len(readable) < len(posts):
                    texts.lost.append(f"{z.code} {room}: shown, but not as a morning briefing")
                want = sum(1 for rid in {p.row for p in posts} if rows[rid][12])
                got = self.pictures.get(room.split(":", 1)[1], 0)
                if want:
                    pictures.count(got, f"{z.code} {room}")
                elif got:
                    pictures.doubled.append(f"{z.code} {room} x{got}, no briefing with a picture shown")
        pictures.note = "each marked with its row and page (Matrix: content key; Slack: file name)"
        return texts, pictures

    # ---------------------------------------------------------------------------------------- figures

    def report(self) -> Report:
        run, s = self.run, self.s
        rep = Report(s)
        L = rep.lines.append
        rows_check = self.check_rows()
        answers, rtt = self.answers()
        alerts, escalations = self.alerts()
        texts, pictures = self.briefings()
        rep.checks = [answers, alerts, escalations, texts, pictures, rows_check]

        load_s = run.load_end - run.load_start
        L(f"== national load: {len(self.r.zones)} zones, {len(self.r.agencies)} agencies, {len(self.r.people)} "
          f"members; {s.vessels:,} vessels at {s.rate:,}/s with bursts of {s.burst:,}; "
          f"{s.commands_per_minute:g} commands/min for {load_s:.0f} s; {len(run.group)} replicas")

        # Command round trip, idle first, then under load (outside the takeover, and all).
        window = None
        if run.kill:
            worst = max(run.takeovers.values(), default=60.0)
            window = (run.kill[0] - 1.0, run.kill[0] + worst + 5.0)

        def rt(phase: str, platform: str | None = None, outside: bool = False) -> list[float]:
            return [rtt[c.n] for c in run.commands if c.phase == phase and c.n in rtt
                    and (platform is None or c.platform == platform)
                    and not (outside and window and window[0] <= c.sent_at <= window[1])]

        L("-- command round trip (sent → its answer shown), p50 / p99")
        idle_all = rt("idle")
        for label, xs in (("idle", idle_all), ("load, outside the takeover", rt("load", outside=True)),
                          ("load, all", rt("load"))):
            L(f"{label}: {_ms(percentile(xs, 50))} / {_ms(percentile(xs, 99))} over {len(xs)} "
              f"(Slack {_ms(percentile(rt(label.split(',')[0], 'slack', 'outside' in label), 99))}, Matrix "
              f"{_ms(percentile(rt(label.split(',')[0], 'matrix', 'outside' in label), 99))} p99)")
        starts = {c.n: c.sent_at for c in run.commands}
        for cmd in run.commands:
            if cmd.platform == "matrix" and cmd.event_id in self.matrix_events:
                starts[cmd.n] = self.matrix_events[cmd.event_id]["origin_server_ts"] / 1000
        for phase in ("idle", "load"):
            intake = [self.handled[c.event_id] - starts[c.n] for c in run.commands
                      if c.phase == phase and c.event_id in self.handled]
            out = [starts[c.n] + rtt[c.n] - self.handled[c.event_id] for c in run.commands
                   if c.phase == phase and c.event_id in self.handled and c.n in rtt]
            L(f"  {phase}: sent → handled (a replica logged it) p50 {_ms(percentile(intake, 50))} p99 "
              f"{_ms(percentile(intake, 99))}; handled → answer shown p50 {_ms(percentile(out, 50))} p99 "
              f"{_ms(percentile(out, 99))}")
        buckets: dict[int, list[float]] = defaultdict(list)
        for c in run.commands:
            if c.phase == "load" and c.n in rtt:
                buckets[int((c.sent_at - run.load_start) // 15)].append(rtt[c.n])
        L("  load, by 15 s from its start (p50/max ms): " + " ".join(
            f"{k * 15}s:{percentile(xs, 50) * 1000:.0f}/{max(xs) * 1000:.0f}" for k, xs in sorted(buckets.items())))
        busy = rt("load", outside=True)
        if idle_all and busy:
            r50 = percentile(busy, 50) / percentile(idle_all, 50)
            r99 = percentile(busy, 99) / percentile(idle_all, 99)
            L(f"ratio under load ÷ idle: p50 {r50:.2f}x, p99 {r99:.2f}x (goal p99 <= 1.5x)")
            rep.goals.append((f"command round trip p99 under load ÷ idle = {r99:.2f}x <= 1.5x", r99 <= 1.5))

        self._ais_figures(rep)
        self._delivery_figures(rep)
        self._memory_figures(rep)
        self._db_figures(rep)
        self._takeover_figures(rep)
        self._cpu_figures(rep)
        L(f"Slack requests sent again to another replica (no answer, or not 200): {run.slack_retries}")
        L(f"conflicts raised: {len(self.conflicts)} ({dict(Counter(k for _, _, k, _ in self.conflicts))}), "
          f"escalated {sum(1 for c in self.conflicts if c[3])}; commands by kind: "
          f"{dict(Counter(c.kind for c in run.commands))}")
        return rep

    def _ais_figures(self, rep: Report) -> None:
        run, s, f = self.run, self.s, self.run.feed_result
        L = rep.lines.append
        L("-- AIS feed")
        if f is None:
            rep.problems.append("the AIS feed process gave no result")
            return
        counted = Counter()
        for counts in run.ais_counts.values():
            counted.update(counts)
        total = sum(counted.values())
        bursts = ", ".join(f"{n:,} in {took:.2f} s" if took else f"{n:,} (unfinished)" for _, n, took in f.bursts)
        L(f"sent {f.sent:,} sentences in {f.seconds:.0f} s ({f.sent / max(f.seconds, 1):,.0f}/s); bursts: "
          f"{bursts or 'none'}; TCP: {len(f.tcp_connections)} connections, {f.tcp_written:,} written, "
          f"{f.tcp_no_client:,} with no client connected (a UDP replica holding the feed), {f.tcp_slow_dropped:,} not written (client too far "
          f"behind); UDP: {f.udp_datagrams:,} datagrams to {len(run.udp_ports)} ports")
        L(f"counted by the holders (watchfloor_ais_sentences_total): {total:,.0f} — "
          + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(counted.items()) if v))
        kernel = sum(run.udp_drops.values())
        nobody = 0
        if run.kill and "ais" in run.kill[2]:
            # Sent after the kill and before the next holder listened: until the first probe sent after the kill
            # that was stored (probes go every 1/probe_rate s).
            stored = [t for m, st, t in f.probes if t > run.kill[0] and (m, st) in run.probe_seen["history"]]
            until = min(stored, default=run.kill[0])
            nobody = sum(n for sec, n in f.per_second.items() if run.kill[0] <= sec + 0.5 <= until)
        L(f"dropped: {counted.get('dropped', 0):,.0f} by the bot (its decoding process overloaded or restarted), "
          f"{kernel:,} by the kernel on the UDP feed ports (/proc/net/udp), ~{nobody:,} sent while nobody held "
          f"the feed (kill → takeover); not accounted for: {f.sent - total - kernel - nobody:,.0f}")
        if run.ais_gauges:
            L("AIS gauges (max over the run): " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(run.ais_gauges.items())))
        else:
            L("AIS decoding queue: not on /metrics (no watchfloor_ais_* gauge is exposed)")
        # A position's lag: probe sent → stored. Around the kill two kinds are lost by design: what the killed
        # holder had received and not yet written (up to a flush of positions, 2 s, or of tracks, 10 s), and what
        # was sent before the next holder listened.
        sent = f.probes
        around = None
        if run.kill and "ais" in run.kill[2]:
            around = (run.kill[0] - 12.0, run.kill[0] + run.takeovers.get("ais", 60.0) + 2.0)
        for where, label in (("history", "position history (vessel_position)"), ("track", "stored track (vessel)")):
            seen = run.probe_seen[where]
            lags, lost, in_kill = [], 0, 0
            for mmsi, stamp, t in sent:
                got = seen.get((mmsi, stamp))
                if got is None:
                    if around and around[0] <= t <= around[1]:
                        in_kill += 1
                    elif t < run.load_end - 15:
                        lost += 1
                    continue
                lags.append(got - t)
            L(f"lag sentence → {label}: p50 {percentile(lags, 50):.1f} s, p99 {percentile(lags, 99):.1f} s, "
              f"max {max(lags, default=float('nan')):.1f} s over {len(lags)} probes; never stored {lost}"
              + (f" (and {in_kill} around the kill: in the killed holder's memory, or sent before the next "
                 f"one listened)" if in_kill else ""))
            p99 = percentile(lags, 99)
            rep.goals.append((f"position lag p99 to the {label} = {p99:.1f} s <= 5 s", p99 <= 5.0))

    def _delivery_figures(self, rep: Report) -> None:
        run = self.run
        rep.lines.append("-- delivery lag (outbox created → sent), loaded phase")
        lo, hi = datetime.fromtimestamp(run.load_start, UTC), datetime.fromtimestamp(run.load_end, UTC)
        by: dict[str, list[float]] = defaultdict(list)
        for _, room, kind, status, created, sent, *_ in self.rows.values():
            if status != "sent" or sent is None:
                continue
            created = created if created.tzinfo else created.replace(tzinfo=UTC)
            sent = sent if sent.tzinfo else sent.replace(tzinfo=UTC)
            if lo <= created <= hi and not room.startswith("console:"):
                by[room.split(":", 1)[0]].append((sent - created).total_seconds())
        for platform, xs in sorted(by.items()):
            rep.lines.append(f"{platform}: p50 {_ms(percentile(xs, 50))}, p99 {_ms(percentile(xs, 99))}, max "
                             f"{_ms(max(xs))} over {len(xs)} messages")

    def _memory_figures(self, rep: Report) -> None:
        """Resident memory per replica and decoding process, each sample. Judged flat when, over the samples after
        the warm-up, it grows by at most flat_mb or flat_pct. Growth that is no leak is left out of the judgement:
        a process's first `warmup` seconds, and SETTLE seconds after the last briefing fell due (the first one a
        replica renders imports matplotlib) and after the SIGKILL (the survivors take the duties: a Matrix
        client, the feed's tracks)."""
        run, s = self.run, self.s
        L = rep.lines.append
        settled = max([s.warmup] + [t - run.load_start + SETTLE for t in run.briefings_due]
                      + ([run.kill[0] - run.load_start + SETTLE] if run.kill else []))
        L(f"-- memory (RSS, MB) every {s.sample_every:g} s from the loaded phase's start; judged from {settled:.0f} s "
          f"(warm-up {s.warmup:g} s, {SETTLE:g} s after the last briefing and the kill)")
        series: dict[tuple[str, int, str], list[tuple[float, float]]] = defaultdict(list)
        for t, name, pid, role, mb in run.rss:
            if t >= run.load_start - 1:
                series[(name, pid, role)].append((t - run.load_start, mb))
        for (name, pid, role), xs in sorted(series.items()):
            L(f"{name} {role} (pid {pid}): " + " ".join(f"{mb:.0f}" for _, mb in xs))
            judged = [(t, mb) for t, mb in xs if t >= max(settled, xs[0][0] + s.warmup)]
            if len(judged) < 2:
                continue
            base, last = judged[0][1], judged[-1][1]
            grew = last - base
            flat = grew <= max(s.flat_mb, base * s.flat_pct / 100)
            rep.memory.append((name, role, pid, base, last))
            rep.memory_flat &= flat
            L(f"   judged: {base:.0f} → {last:.0f} MB ({grew:+.0f} MB over {judged[-1][0] - judged[0][0]:.0f} s): "
              f"{'flat' if flat else 'GROWS'}")
        if rep.memory:
            rep.goals.append(("memory flat after the warm-up (each replica and decoding process)", rep.memory_flat))
        else:
            L("   (no process lived long enough after the warm-up for two samples: not judged)")

    def _db_figures(self, rep: Report) -> None:
        run = self.run
        xs = [(t, b) for t, b in run.db_size if run.load_start - 1 <= t <= run.load_end + 1]
        rep.lines.append("-- database size (pg_database_size)")
        if len(xs) >= 2:
            (t0, b0), (t1, b1) = xs[0], xs[-1]
            per_hour = (b1 - b0) / max(1.0, t1 - t0) * 3600
            rep.lines.append(f"{b0 / 1e6:.0f} MB → {b1 / 1e6:.0f} MB over {t1 - t0:.0f} s of load: "
                             f"{per_hour / 1e6:,.0f} MB/hour")
        if len(run.table_sizes) == 2:
            before, after = run.table_sizes
            grew = sorted(((after[t] - before.get(t, 0), t) for t in after), reverse=True)[:6]
            rep.lines.append("grown most in the load (table with its indexes and TOAST): " + ", ".join(
                f"{t} +{g / 1e6:.1f} MB (now {after[t] / 1e6:.1f})" for g, t in grew))
        else:
            rep.lines.append("not enough samples (run longer than sample_every)")

    def _cpu_figures(self, rep: Report) -> None:
        """Where the machine's CPU went in the loaded phase: each process's (or group's: PostgreSQL's backends)
        share of one core, from the CPU time each pid used between its first and last sample in the phase."""
        run = self.run
        first, last = {}, {}
        for t, name, pid, cpu in run.cpu:
            if run.load_start - 1 <= t <= run.load_end + 1:
                first.setdefault((name, pid), (t, cpu))
                last[(name, pid)] = (t, cpu)
        used: dict[str, float] = defaultdict(float)
        span: dict[str, list[float]] = {}
        for key, (t0, c0) in first.items():
            t1, c1 = last[key]
            used[key[0]] += c1 - c0
            lo, hi = span.get(key[0], (t0, t1))
            span[key[0]] = (min(lo, t0), max(hi, t1))
        shares = [(100 * used[name] / (hi - lo), name) for name, (lo, hi) in span.items() if hi > lo]
        loads = [a for t, a in run.loadavg if run.load_start - 1 <= t <= run.load_end + 1]
        rep.lines.append("-- CPU in the loaded phase (% of one core; the machine has "
                         f"{os.cpu_count()}), load average {loads[0] if loads else '?'} → {loads[-1] if loads else '?'}")
        rep.lines.append(", ".join(f"{name} {share:.0f}%" for share, name in sorted(shares, reverse=True)))

    def _takeover_figures(self, rep: Report) -> None:
        run = self.run
        rep.lines.append("-- the SIGKILL")
        if run.kill is None:
            rep.lines.append("no kill")
            return
        at, victim, held = run.kill
        took = ", ".join(f"{d} {run.takeovers[d]:.1f} s" for d in held if d in run.takeovers)
        missing = [d for d in held if d not in run.takeovers]
        rep.lines.append(f"{victim} (holding {', '.join(held) or 'nothing'}) killed {at - run.load_start:.0f} s "
                         f"into the load; taken over: {took or '-'}"
                         + (f"; NOT taken over: {missing}" if missing else ""))
        if missing:
            rep.problems.append(f"duties not taken over after the SIGKILL: {missing}")
        if run.decoder_left:
            rep.problems.append(f"the killed replica's AIS decoding (or drawing) process lived on: "
                                f"pids {run.decoder_left}")
        worst = max(run.takeovers.values(), default=0.0)
        rep.goals.append((f"takeover after the SIGKILL = {worst:.1f} s <= 30 s", not missing and worst <= 30))


def _ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1000:.0f} ms"
