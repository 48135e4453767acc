"""The conflict rules, and the two fast ways of applying them, against the plain all-pairs reference.

`sweep` (zone scans) and `Deconfliction.check_operation` (each command, on a real database through its indexes)
must find exactly what checking every pair finds, for random operations that crowd together, sit on the
antimeridian or near a pole, and share vessels.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert
from sqlmodel import col, select

from watchfloor.ioc.conflicts import (gap_finding, naive_findings, pair_findings, same_vessel, sweep,
                           target_needs_cover)
from watchfloor.ioc.markings import Marking
from watchfloor.ioc.model import OPEN_CONFLICT_STATUSES, Operation, Target
from watchfloor.storage import operations as ops_repo
from watchfloor.storage.tables import ConflictRow, OperationRow
from tests.helpers import check_query_plans, make_parts

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# Clusters: Long Beach harbour, Adak on both sides of ±180°, Guam, close to the North Pole, and the open sea.
CLUSTERS = [(33.74, -118.27), (51.88, 179.98), (51.88, -179.98), (13.44, 144.79), (89.95, 20.0), (25.0, -80.0)]
VESSELS = ["imo:9074729", "imo:9176187", "mmsi:366123456", "mmsi:338000001", "name:SEA BREEZE"]


_one_op = st.tuples(
    st.sampled_from(["CBP", "USCG", "HSI"]),
    st.sampled_from(CLUSTERS + [None]),                     # None: a vessel-only operation
    st.floats(-0.02, 0.02), st.floats(-0.02, 0.02),
    st.one_of(st.sampled_from([100.0, 500.0, 1852.0, 3000.0, 150_000.0]), st.floats(50, 20_000)),
    st.sampled_from(VESSELS + [None, None]),
    st.integers(0, 4 * 24), st.integers(1, 4 * 12),       # start and length, in quarter hours
    st.sampled_from(list(Marking)),
    st.sampled_from(["planned", "planned", "planned", "active", "done", "cancelled"]),
)


def _build(specs) -> list[Operation]:
    ops = []
    for i, (agency, cluster, dlat, dlon, radius, vessel, q_start, q_len, marking, status) in enumerate(specs, 1):
        lat = lon = None
        if cluster is not None:
            lat = max(-90.0, min(90.0, cluster[0] + dlat))
            lon = ((cluster[1] + dlon + 180.0) % 360.0) - 180.0
        elif vessel is None:
            vessel = VESSELS[i % len(VESSELS)]
        start = T0 + timedelta(minutes=15 * q_start)
        ops.append(Operation(id=i, zone="LALB", agency=agency, type="patrol", start=start,
                             end=start + timedelta(minutes=15 * q_len), lat=lat, lon=lon, radius_m=radius,
                             vessel_key=vessel, marking=marking, status=status))
    return ops


def operations(max_size=40):
    return st.lists(_one_op, max_size=max_size).map(_build)


@settings(max_examples=300, deadline=None)
@given(ops=operations(max_size=60))
def test_sweep_finds_exactly_what_all_pairs_finds(ops):
    assert sweep(ops) == naive_findings(ops)


def _op(i, agency, start_h, end_h, lat=33.74, lon=-118.27, radius=500.0, vessel=None, status="planned"):
    return Operation(id=i, zone="LALB", agency=agency, type="patrol", start=T0 + timedelta(hours=start_h),
                     end=T0 + timedelta(hours=end_h), lat=lat, lon=lon, radius_m=radius, vessel_key=vessel,
                     status=status)


def test_each_rule_on_one_pair():
    a = _op(1, "CBP", 0, 2)
    assert [f.kind for f in pair_findings(a, _op(2, "USCG", 1, 3))] == ["overlap"]
    assert pair_findings(a, _op(2, "CBP", 1, 3)) == []                      # same agency never conflicts
    assert pair_findings(a, _op(2, "USCG", 2, 4)) == []                     # touching windows do not overlap
    assert pair_findings(a, _op(2, "USCG", 1, 3, lat=33.80)) == []          # 6.7 km apart, 500 m circles
    assert pair_findings(a, _op(2, "USCG", 1, 3, status="cancelled")) == []
    v = "imo:9074729"
    near = _op(1, "CBP", 0, 2, lat=None, lon=None, vessel=v)
    assert [f.kind for f in pair_findings(near, _op(2, "HSI", 7.9, 9, lat=None, lon=None, vessel=v))] == \
        ["same-vessel"]                                                     # 5 h 54 apart
    assert not same_vessel(near, _op(2, "HSI", 8, 9, lat=None, lon=None, vessel=v))  # exactly 6 h apart
    assert not same_vessel(near, _op(2, "HSI", 1, 3, lat=None, lon=None, vessel="name:SEA BREEZE"))
    both = pair_findings(_op(1, "CBP", 0, 2, vessel=v), _op(2, "USCG", 1, 3, vessel=v))
    assert {f.kind for f in both} == {"overlap", "same-vessel"}


@pytest.mark.calendar_free
def test_gap_rule():
    now = T0
    t = Target(id=1, zone="LALB", vessel_key="imo:9074729", eta=now + timedelta(hours=5), priority="high")
    assert gap_finding(t, [], now).key == "gap:1"
    assert gap_finding(t, [_op(1, "CBP", 0, 2, vessel="imo:9074729")], now) is None
    assert gap_finding(t, [_op(1, "CBP", 0, 2, vessel="imo:9074729", status="cancelled")], now) is not None
    medium = Target(id=2, zone="LALB", vessel_key="imo:9074729", eta=now + timedelta(hours=5))
    assert not target_needs_cover(medium, now)
    endorsed = Target(id=3, zone="LALB", vessel_key="imo:9074729", eta=now + timedelta(hours=5),
                      endorsers=frozenset({"CBP", "USCG"}))
    assert target_needs_cover(endorsed, now)
    later = Target(id=4, zone="LALB", vessel_key="imo:9074729", eta=now + timedelta(hours=25), priority="high")
    assert not target_needs_cover(later, now)
    assert target_needs_cover(later, now + timedelta(hours=2))


# --- the per-command check on a real database ----------------------------------------------------------------

@pytest.fixture
def deconfliction_db(db_url, clock):
    return make_parts(db_url, clock)


def _store(s, ops: list[Operation]) -> None:
    rows = []
    for op in ops:
        row = OperationRow(id=op.id, zone_code=op.zone, agency_code=op.agency, type=op.type,
                           vessel_key=op.vessel_key, start_at=op.start, end_at=op.end, marking=op.marking.value,
                           status=op.status, created_by="test", created_at=T0, updated_at=T0)
        ops_repo.set_place(row, op.lat, op.lon, op.radius_m)
        rows.append(row.model_dump())
    if rows:
        s.exec(insert(OperationRow), params=rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ops=operations(max_size=25))
def test_indexed_check_finds_exactly_what_all_pairs_finds(deconfliction_db, ops):
    parts = deconfliction_db
    deconf = parts.engine.deconfliction
    expected = naive_findings(ops)
    with parts.db.session() as s:
        s.exec(delete(ConflictRow))
        s.exec(delete(OperationRow))
        _store(s, ops)
    with parts.db.session() as s:
        for op in ops:
            row = s.get(OperationRow, op.id)
            deconf.check_operation(s, row, T0, "test")
            mine = {cf.key for cf in s.exec(select(ConflictRow).where(
                col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES),
                (ConflictRow.op_a == op.id) | (ConflictRow.op_b == op.id))).all()}
            assert mine == {f.key for f in expected if op.id in f.op_ids}, op
        everything = {cf.key for cf in s.exec(select(ConflictRow).where(
            col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))).all()}
    assert everything == {f.key for f in expected}


def test_check_uses_the_indexes_not_a_table_scan(sqlite_url, clock):
    """What `op log` reads must come through (zone, start) and (zone, vessel), whatever the planner's stats."""
    parts = make_parts(sqlite_url, clock)
    history = [_op(i, "CBP", -24 * (i % 900), -24 * (i % 900) + 2, vessel=VESSELS[i % 4],
                   status="done" if i % 3 else "planned") for i in range(1, 3000)]
    with parts.db.session() as s:
        _store(s, history)
    probe = _op(5000, "USCG", 1, 3, vessel="imo:9074729")
    plans = check_query_plans(parts, probe)
    assert len(plans) == 2
    assert "ix_operation_window (zone_code=? AND start_at>? AND start_at<?)" in plans[0]
    assert "ix_operation_zone_vessel (zone_code=? AND vessel_key=?)" in plans[1]
    assert not any("SCAN operation" in p for p in plans)
