"""The configuration file as an administrator meets it: every problem at once, each naming its key;
environment overrides; secrets that never show."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from watchfloor.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]

BAD = '''
[service]
port = 8080

[slack]
bot_token = "xoxb-in-the-file"
port = 3000

[matrix]
homeserver = "http://localhost:8008"
user_id = "@watchfloor:localhost"

[[zone]]
code = "LALB"
briefing_time = "7am"
joint_rooms = ["matrix:!abc:localhost", "slack:c0lower"]
watch_rooms = ["matrix:!watch:localhost", "matrix:@sam:localhost"]
supervisors = ["matrix:@sam:localhost"]

[[zone]]
code = "XYZ"

[[zone]]
code = "NY"
joint_rooms = ["matrix:!abc:localhost"]

[[district]]
name = "Southwest"
watch_rooms = ["matrix:!d11:localhost"]

[[room]]
id = "matrix:@bob:localhost"
clearance = ["UNCLASS", "SECRET"]

[[agency]]
code = "CBP"
members = ["matrix:@alice:localhost", "matrix:!abc:localhost"]
supervisors = ["matrix:@sam:localhost"]

[[agency]]
code = "USCG"
supervisors = ["matrix:@sam:localhost"]
colour = "blue"

[zones]
code = "SD"
'''

EXPECTED = {
    "slack.signing_secret: missing",
    "matrix.password: missing",
    "zone[0].briefing_time: '7am' is not a time of day",
    "zone[0].joint_rooms[1]: malformed room id 'slack:c0lower'",
    "zone[0].watch_rooms[1]: 'matrix:@sam:localhost' is a person, not a room",
    "zone[0].supervisors: unknown key (people are listed under [[agency]] members and supervisors)",
    "zone[1].code: unknown zone code 'XYZ'",
    "zone[2].joint_rooms[0]: room 'matrix:!abc:localhost' is bound twice (zones LALB and NY)",
    "room[0].id: 'matrix:@bob:localhost' is a person, not a room",
    "room[0].clearance[1]: 'SECRET' is not one of",
    "agency[0].members[1]: 'matrix:!abc:localhost' is a room, not a person",
    "agency[1].supervisors[0]: 'matrix:@sam:localhost' is in two agencies (CBP and USCG)",
    "agency[1].colour: unknown key",
    "zones: unknown key (did you mean [[zone]]?)",
}


def _problems(path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    return e.value.problems


def test_every_problem_is_reported_at_once_naming_its_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    problems = _problems(path)
    for expected in EXPECTED:
        assert sum(p.startswith(expected) for p in problems) == 1, (expected, problems)
    assert len(problems) == len(EXPECTED), problems
    assert not any("xoxb-in-the-file" in p for p in problems)


def test_example_config_is_valid_and_check_prints_a_summary():
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "config", "check", "watchfloor.example.toml"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("watchfloor.example.toml: ok (2 zones")
    settings = load_settings(ROOT / "watchfloor.example.toml")
    assert [z.code for z in settings.zone] == ["LALB", "NY"]
    assert settings.zone[1].briefing_time.strftime("%H:%M") == "06:30"


def test_config_check_lists_every_problem_one_per_line_and_exits_1(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "config", "check", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    # the problems, then the summary after them on the same stream (a pager or a file keeps them together)
    assert lines[-1] == f"{path}: {len(EXPECTED)} problems" and out.stderr == ""
    assert len(lines[:-1]) == len(EXPECTED)
    assert all(any(line.startswith(e) for e in EXPECTED) for line in lines[:-1]), lines


def test_run_with_a_bad_config_stops_before_starting(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "run", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "zone[1].code: unknown zone code 'XYZ'" in out.stderr
    assert "agency[1].colour: unknown key" in out.stderr
    assert "Traceback" not in out.stderr


def test_environment_overrides_the_file_and_secrets_stay_secret(tmp_path, monkeypatch):
    path = tmp_path / "wf.toml"
    path.write_text('[slack]\nbot_token = "xoxb-file"\nsigning_secret = "file-secret"\n'
                    '[[zone]]\ncode = "LALB"\nwatch_rooms = ["slack:C0WATCH"]\n')
    monkeypatch.setenv("WATCHFLOOR_SLACK__BOT_TOKEN", "xoxb-from-env-9f8e7d")
    monkeypatch.setenv("WATCHFLOOR_DATABASE__URL", "sqlite:///elsewhere.db")
    monkeypatch.setenv("WATCHFLOOR_CONFLICTS__SAME_VESSEL_HOURS", "4")
    settings = load_settings(path)
    assert settings.slack.bot_token.get_secret_value() == "xoxb-from-env-9f8e7d"
    assert settings.slack.signing_secret.get_secret_value() == "file-secret"
    assert settings.database.url == "sqlite:///elsewhere.db"
    assert settings.conflicts.same_vessel_hours == 4
    assert "xoxb-from-env-9f8e7d" not in repr(settings) and "xoxb-from-env-9f8e7d" not in str(settings.model_dump())


def test_a_secret_given_only_in_the_environment_completes_a_section(tmp_path, monkeypatch):
    path = tmp_path / "wf.toml"
    path.write_text('[matrix]\nhomeserver = "http://localhost:8008"\nuser_id = "@wf:localhost"\n')
    with pytest.raises(ConfigError):
        load_settings(path)
    monkeypatch.setenv("WATCHFLOOR_MATRIX__PASSWORD", "hunter2")
    assert load_settings(path).matrix.password.get_secret_value() == "hunter2"


def test_a_bad_value_from_the_environment_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHFLOOR_SERVICE__PORT", "99999")
    monkeypatch.setenv("WATCHFLOOR_CONFLICTS__GAP_MIN_ENDORSERS", "two")
    problems = _problems(None)
    assert "service.port (from WATCHFLOOR_SERVICE__PORT): 99999 is not a TCP port (1-65535)" in problems
    assert "conflicts.gap_min_endorsers (from WATCHFLOOR_CONFLICTS__GAP_MIN_ENDORSERS): 'two' is not a whole " \
           "number" in problems


@pytest.mark.parametrize("toml, expected", [
    ('[slack]\nsigning_secret = "s"\n', "slack.bot_token: missing"),
    ('[slack]\nbot_token = ""\nsigning_secret = "s"\n', "slack.bot_token: is empty"),
    ('[[zone]]\ncode = "LALB"\nbriefing_time = "25:00"\n', "zone[0].briefing_time: '25:00' is not a time of day"),
    ('[[zone]]\ncode = "LALB"\n[[zone]]\ncode = "lalb"\n', "zone[1].code: zone LALB is configured twice"),
    ('[service]\nport = 3000\n[slack]\nbot_token = "t"\nsigning_secret = "s"\n',
     "slack.port: 3000 is also service.port"),
    ('[matrix]\nhomeserver = "localhost"\nuser_id = "watchfloor"\npassword = "p"\n',
     "matrix.homeserver: 'localhost' is not a homeserver URL"),
    ('[[district]]\nname = "Atlantis"\n', "district[0].name: unknown district 'Atlantis'"),
    ('[[zone]]\ncode = "LALB"\n', None),
    ('[[zone]]\ncode = "LALB"\nbriefing_time = 07:15:00\n', None),
    ('[zone]\ncode = "LALB"\n', "zone: must be a list of tables ([[zone]])"),
    ('[slack\nbot_token = "t"\n', "is not valid TOML"),
])
def test_single_problems(tmp_path, toml, expected):
    path = tmp_path / "wf.toml"
    path.write_text(toml)
    if expected is None:
        load_settings(path)
        return
    problems = _problems(path)
    assert any(expected in p for p in problems), problems


def test_file_not_found_is_one_line():
    assert _problems("/nonexistent/wf.toml") == ["config: file /nonexistent/wf.toml not found"]


def test_check_warns_about_rooms_no_platform_reaches(tmp_path):
    path = tmp_path / "wf.toml"
    path.write_text('[[zone]]\ncode = "LALB"\njoint_rooms = ["slack:C0JOINT"]\n')
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "config", "check", str(path)],
                         capture_output=True, text=True, timeout=120, env={**os.environ})
    assert out.returncode == 0
    assert "warning: room 'slack:C0JOINT': there is no [slack] section" in out.stdout


def test_a_room_in_an_unknown_zone_is_still_checked_on_the_first_run(tmp_path):
    """Every problem on the first run: the unknown code, the bad time, and the room bound to two zones."""
    path = tmp_path / "twice.toml"
    path.write_text('[[zone]]\ncode = "NOPE"\njoint_rooms = ["slack:C0JOINT"]\nwatch_rooms = ["bad room"]\n\n'
                    '[[zone]]\ncode = "LALB"\nbriefing_time = "25:00"\njoint_rooms = ["slack:C0JOINT"]\n')
    problems = _problems(path)
    assert sorted(problems) == sorted([
        "zone[0].code: unknown zone code 'NOPE' (see `watchfloor zones`)",
        *[p for p in problems if p.startswith("zone[0].watch_rooms[0]: ")],
        "zone[1].briefing_time: '25:00' is not a time of day (HH:MM, zone local time, e.g. \"07:00\")",
        "zone[1].joint_rooms[0]: room 'slack:C0JOINT' is bound twice (zones NOPE and LALB)",
    ]), problems
    assert len(problems) == 4
