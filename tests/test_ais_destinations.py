"""AIS destinations matched to zones: the forms crews type (`USLAX`, `US LGB`, `LOS ANGELES`, `CNSHA>USLGB`), and a
vessel bound for a zone's port counting as arriving there before any notice of arrival (arrivals, ETA rule)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyais import encode_dict

from tests.helpers import ConsoleUser, make_parts
from watchfloor.commands.ais_ingest import AisIngest
from watchfloor.ioc.ports import locodes, zone_of_destination
from watchfloor.ioc.zones import all_zones, get_zone

LALB = get_zone("LALB")


@pytest.mark.parametrize("destination, zone", [
    ("USLAX", "LALB"), ("US LAX", "LALB"), ("us-lgb", "LALB"), ("US LGB", "LALB"), ("USLGB PIER T", "LALB"),
    ("LOS ANGELES", "LALB"), ("Long Beach,USA", "LALB"), ("LA/LB", "LALB"), ("LB", "LALB"),
    ("CNSHA>USLGB", "LALB"), ("SHANGHAI > LOS ANGELES", "LALB"), ("OAKLAND>LOS ANGELES", "LALB"),
    ("USOAK", "SF"), ("SAN FRANCISCO", "SF"), ("ST. LOUIS", "UMR"), ("PORTLAND OR", "CR"), ("PORTLAND ME", "SNNE"),
    ("PRSJU", "SJ"), ("SEATTLE/TACOMA", "PS"), ("HOUSTON TX", "HOU"), ("NEW YORK", "NY"),
    # not a port of ours, ambiguous, or not a destination at all
    ("PORTLAND", None), ("LA SPEZIA", None), ("SHANGHAI", None), ("USLAX>CNSHA", None), ("FOR ORDERS", None),
    ("LAX", None), ("", None), ("@@@@@@@@@@@@@@@@@@@@", None), (None, None),
])
def test_destination_forms(destination, zone):
    assert zone_of_destination(destination) == zone


def test_every_locode_names_a_real_zone():
    assert locodes() and set(locodes().values()) <= set(all_zones())


@given(code=st.sampled_from(sorted(locodes())), sep=st.sampled_from(["", " ", "-"]),
       lower=st.booleans(), before=st.sampled_from(["", "CNSHA>", "JPTYO > ", "KRPUS=>"]),
       after=st.sampled_from(["", " ANCH", " USA", ",US"]))
def test_a_locode_in_any_usual_form_names_its_zone(code, sep, lower, before, after):
    text = f"{before}{code[:2]}{sep}{code[2:]}{after}"
    assert zone_of_destination(text.lower() if lower else text) == locodes()[code]


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=20))
def test_any_text_gives_a_zone_or_none_and_never_fails(text):
    assert zone_of_destination(text) in set(all_zones()) | {None}


def _ship(parts, clock, destination: str, eta_hours: float, mmsi: int = 366999001, moving: bool = False) -> None:
    ingest = AisIngest(parts.db, parts.directory)
    eta = clock.now + timedelta(hours=eta_hours)
    for line in encode_dict({"type": 5, "mmsi": mmsi, "imo": 9074729, "shipname": "BOUND HERE",
                             "destination": destination, "month": eta.month, "day": eta.day, "hour": eta.hour,
                             "minute": eta.minute}):
        ingest.feed(line, clock.now)
    # far out in the Pacific, stopped (or steaming away): no ETA from distance and speed
    for line in encode_dict({"type": 1, "mmsi": mmsi, "lat": 30.0, "lon": -140.0, "speed": 12 if moving else 0,
                             "course": 270}):
        ingest.feed(line, clock.now)
    ingest.flush(clock.now)


def test_a_ship_bound_for_the_zone_is_an_arrival_before_any_notice(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}, {"code": "SF"}])
    _ship(parts, clock, "US LGB", eta_hours=30, moving=True)
    lalb = ConsoleUser(parts, "LALB", "alice", "CBP")
    sf = ConsoleUser(parts, "SF", "sam", "CBP")
    assert "No vessels expected" in lalb.say("!arrivals")  # 30 h out: not in the next 24 h
    four = lalb.say("!arrivals 96h").splitlines()
    assert four[0].endswith("next 96h: 1 vessel")
    assert "BOUND HERE" in four[1] and "(AIS, reported for US LGB)" in four[1] and "no target" in four[1]
    assert "No vessels expected" in sf.say("!arrivals 96h")  # bound for another zone's port


def test_the_crews_eta_for_a_zone_port_is_the_targets_eta_when_nothing_better(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    _ship(parts, clock, "USLAX", eta_hours=20)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say("!target nominate 366999001 priority=high")
    assert "(AIS, reported for USLAX)" in alice.say("!target show TGT-1")
    # what a person typed is not overruled by the crew's entry
    alice.say("!target update TGT-1 eta=+30h")
    shown = alice.say("!target show TGT-1")
    assert "(typed)" in shown and "reported for" not in shown
