"""The shape of the house (the contract's "The house"; README's Layout): what may import what.

Every module's imports are read from its source (imports inside functions too, since those are the ones a
circle hides behind), and the tree must hold these rules:

- no circle: no module reaches itself through imports, directly or around several modules;
- layers only look down: `ioc` imports no other layer; `storage` neither `bot` nor `commands`; `commands` not
  `bot`; `templates` none of `bot`, `commands`, `storage`;
- a platform's package (`bot/matrix/`, `bot/slack/`, `bot/ais/`, `bot/web/`, and any new one; `bot/cli/`, the
  command line that drives them all, is a shared part) imports no other platform's package, and no platform module lies loose in `bot/` (`bot/slack_x.py` belongs in `bot/slack/`);
- the session lock (`storage/session_lock.py`) is used by `bot/duties.py` alone: one lease mechanism.

The checks are plain functions over a module graph, so the tests at the end also prove each one catches what it
is for, on a small tree made for the purpose.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The repository's folders and the package each installs as (pyproject.toml `package-dir`).
PACKAGES = {"watchfloor": "watchfloor", "bot": "watchfloor.bot", "commands": "watchfloor.commands",
            "storage": "watchfloor.storage", "templates": "watchfloor.templates", "ioc": "watchfloor.ioc"}
# What each layer may not import (the house is built bottom up: ioc, storage, commands, bot; templates aside).
FORBIDDEN = {
    "watchfloor.ioc": ("watchfloor.bot", "watchfloor.commands", "watchfloor.storage", "watchfloor.templates",
                       "watchfloor.config"),
    "watchfloor.storage": ("watchfloor.bot", "watchfloor.commands"),
    "watchfloor.commands": ("watchfloor.bot",),
    "watchfloor.templates": ("watchfloor.bot", "watchfloor.commands", "watchfloor.storage"),
}
# Packages in bot/ that are shared parts, not an outside world: the command line drives every platform.
SHARED_PACKAGES = {"watchfloor.bot.cli"}
SESSION_LOCK = "watchfloor.storage.session_lock"
LEASE_HOLDER = "watchfloor.bot.duties"


def modules(root: Path = ROOT, packages: dict[str, str] = PACKAGES) -> dict[str, Path]:
    """Every module of the project: dotted name -> file."""
    found = {}
    for folder, package in packages.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if "migrations" in parts and "versions" in parts:
                continue  # Alembic revisions are loaded by Alembic, one by one
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its source (module level or inside functions)."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()

    def add(target: str) -> None:
        # `import a.b.c` or `from a.b import c`: the longest known module named, c itself when it is a module.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                add(full if full in known else source)
    return out


def graph(root: Path = ROOT, packages: dict[str, str] = PACKAGES) -> dict[str, set[str]]:
    found = modules(root, packages)
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges.get(v, ()):
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def upward(edges: dict[str, set[str]]) -> list[str]:
    return [f"{a} imports {b}" for a, targets in sorted(edges.items()) for layer, banned in FORBIDDEN.items()
            if _within(a, layer) for b in sorted(targets) if any(_within(b, x) for x in banned)]


def platforms(edges: dict[str, set[str]]) -> set[str]:
    """The platform packages: every package directly under watchfloor.bot but the shared ones (the CLI)."""
    names = set(edges)
    return {n for n in names if n.count(".") == 2 and n.startswith("watchfloor.bot.")
            and any(m.startswith(n + ".") for m in names)} - SHARED_PACKAGES


def across_platforms(edges: dict[str, set[str]]) -> list[str]:
    rooms = platforms(edges)
    out = []
    for a, targets in sorted(edges.items()):
        mine = next((p for p in rooms if _within(a, p)), None)
        if mine is None:
            continue
        out += [f"{a} imports {b}" for b in sorted(targets)
                if any(_within(b, p) for p in rooms if p != mine)]
    return out


def loose_platform_modules(edges: dict[str, set[str]]) -> list[str]:
    """Modules lying directly in bot/ whose name says they belong to a platform's package (`slack_x`)."""
    prefixes = {p.rpartition(".")[2] + "_" for p in platforms(edges)}
    return sorted(n for n in edges if n.count(".") == 2 and n.startswith("watchfloor.bot.")
                  and any(n.rpartition(".")[2].startswith(pre) for pre in prefixes))


def session_lock_users(edges: dict[str, set[str]]) -> list[str]:
    return sorted(a for a, targets in edges.items() if SESSION_LOCK in targets and a != LEASE_HOLDER)


# --- the project ---------------------------------------------------------------------------------------------

GRAPH = graph()


def test_the_graph_sees_the_project():
    # A graph that lost its modules would pass every rule below: it holds the known rooms and their imports.
    for name in ("watchfloor.bot.slack.adapter", "watchfloor.bot.matrix.adapter", "watchfloor.bot.ais.feed",
                 "watchfloor.bot.web.cop", "watchfloor.bot.duties", "watchfloor.commands.engine"):
        assert name in GRAPH
    assert "watchfloor.storage.session_lock" in GRAPH["watchfloor.bot.duties"]
    assert platforms(GRAPH) >= {"watchfloor.bot.matrix", "watchfloor.bot.slack", "watchfloor.bot.ais",
                                "watchfloor.bot.web"}


def test_no_import_circle():
    assert circles(GRAPH) == []


def test_layers_import_only_downward():
    assert upward(GRAPH) == []


def test_no_platform_imports_another():
    assert across_platforms(GRAPH) == []


def test_no_platform_module_lies_loose_in_bot():
    assert loose_platform_modules(GRAPH) == []


def test_the_session_lock_is_held_by_the_duties_alone():
    assert session_lock_users(GRAPH) == []


# --- the checks catch what they are for ----------------------------------------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return graph(tmp_path, {"bot": "watchfloor.bot", "commands": "watchfloor.commands",
                            "storage": "watchfloor.storage", "ioc": "watchfloor.ioc"})


def test_the_checks_catch_a_circle_an_upward_import_a_crossing_a_loose_module_and_a_second_lease(tmp_path):
    edges = _tree(tmp_path, {
        "bot/__init__.py": "",
        "bot/duties.py": "from watchfloor.storage import session_lock\n",
        "bot/web/__init__.py": "",
        # a circle hidden in a function, as cop_web and health once were
        "bot/web/cop.py": "def f():\n    from .health import PARTS\n",
        "bot/web/health.py": "from watchfloor.bot.web.cop import add_routes\n",
        "bot/slack/__init__.py": "",
        "bot/slack/adapter.py": "from watchfloor.bot.web import health\n",
        "bot/slack_x.py": "",
        "bot/scheduler.py": "def lead():\n    from watchfloor.storage.session_lock import SessionLock\n",
        "commands/__init__.py": "",
        "commands/engine.py": "import watchfloor.bot.duties\n",
        "storage/__init__.py": "",
        "storage/session_lock.py": "",
        "ioc/__init__.py": "",
        "ioc/model.py": "from ..storage import session_lock\n",
    })
    assert circles(edges) == [["watchfloor.bot.web.cop", "watchfloor.bot.web.health"]]
    assert upward(edges) == ["watchfloor.commands.engine imports watchfloor.bot.duties",
                             "watchfloor.ioc.model imports watchfloor.storage.session_lock"]
    assert across_platforms(edges) == ["watchfloor.bot.slack.adapter imports watchfloor.bot.web.health"]
    assert loose_platform_modules(edges) == ["watchfloor.bot.slack_x"]
    assert session_lock_users(edges) == ["watchfloor.bot.scheduler", "watchfloor.ioc.model"]
