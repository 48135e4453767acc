"""The suite does not age: no test may depend on today's date.

On 2026-12-07 six tests began to fail on a fresh clone: they logged operations on 2026-12-05 through the real
clock, and once that day had passed no conflict was raised. A test that writes a date must run on a clock it
controls, so the rule checked here, over the source of every test module, is:

  a test whose source holds a date (an ISO date in a string, or `datetime(2026, ...)` / `date(...)`) — in its own
  body, its parameters, or a module-level constant or helper it uses — either
  - runs the bot on the tests' hand-moved clock (it takes the `clock` fixture, or builds a `Clock`),
  - freezes or moves the process's clock with time-machine (in the test, or in an autouse fixture of its module),
  - or says, with `@pytest.mark.calendar_free`, that its dates never meet the real calendar: it hands its own
    `now` to everything it calls (a pure function given `now=`, a parser given its reference time), or what it
    asserts does not depend on the day.

Dates in tests that talk to a process on the real clock (a CLI run, `watchfloor run`) are computed from today
(`start=+2h`, or a date formatted from `datetime.now()`), never written out.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d")
SAFE_NAMES = {"clock", "Clock", "time_machine", "travel"}


def _dated(node: ast.AST) -> bool:
    docstrings = {id(n.value) for n in ast.walk(node) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    for n in ast.walk(node):
        if id(n) in docstrings:
            continue
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and DATE.search(n.value):
            return True
        if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute)):
            name = n.func.id if isinstance(n.func, ast.Name) else n.func.attr
            if name in ("datetime", "date") and n.args and isinstance(n.args[0], ast.Constant) \
                    and isinstance(n.args[0].value, int) and n.args[0].value >= 2000:
                return True
    return False


def _names(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
    return out


def _marked_calendar_free(decorators: list[ast.expr]) -> bool:
    return any("calendar_free" in _names(d) for d in decorators)


def unsafe_tests(source: str) -> list[str]:
    """The tests of a module that hold a date and neither control the clock nor are marked calendar-free."""
    tree = ast.parse(source)
    top: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            top[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(target, ast.Name):
                    top[target.id] = node
    module_calendar_free = "pytestmark" in top and "calendar_free" in _names(top["pytestmark"])
    # An autouse fixture of the module that moves the clock covers every test in it.
    module_frozen = any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "autouse" in ast.unparse(node.decorator_list)
        and _names(node) & {"time_machine", "travel"} for node in tree.body)
    out = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.name.startswith("test"):
            continue
        used = _names(node)
        helpers = [top[n] for n in used if n in top and n != node.name]
        dated = _dated(node) or any(_dated(h) for h in helpers)
        if not dated:
            continue
        reach = used.union(*(_names(h) for h in helpers)) if helpers else used
        if reach & SAFE_NAMES or module_frozen or module_calendar_free or _marked_calendar_free(node.decorator_list):
            continue
        out.append(node.name)
    return out


def test_no_test_meets_the_real_calendar_with_a_written_date():
    found = {p.name: unsafe_tests(p.read_text()) for p in sorted(TESTS.glob("test_*.py"))}
    assert {name: tests for name, tests in found.items() if tests} == {}


@pytest.mark.calendar_free
def test_the_rule_catches_a_dated_test_on_the_real_clock():
    source = '''
import pytest, time_machine
from datetime import datetime
GOOD = "boarding,2026-12-05T14:00"
def helper():
    return datetime(2026, 12, 5)
def test_written_date_real_clock():
    run(GOOD)
def test_through_a_helper():
    run(helper())
def test_on_the_hand_clock(clock):
    run(GOOD)
def test_frozen():
    with time_machine.travel(datetime(2026, 12, 1)):
        run(GOOD)
@pytest.mark.calendar_free
def test_pure():
    parse("2026-12-05", now=NOW)
@pytest.mark.parametrize("raw", ["2026-12-05"])
def test_dated_parameter(raw):
    run(raw)
def test_relative():
    run("start=+2h")
'''
    assert unsafe_tests(source) == ["test_written_date_real_clock", "test_through_a_helper",
                                    "test_dated_parameter"]
    frozen_module = source + '''
@pytest.fixture(autouse=True)
def fixed_day():
    with time_machine.travel(datetime(2026, 12, 1)):
        yield
'''
    assert unsafe_tests(frozen_module) == []


@pytest.mark.calendar_free
def test_the_marker_is_registered(pytestconfig):
    assert any(m.startswith("calendar_free") for m in pytestconfig.getini("markers"))
