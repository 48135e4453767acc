"""One installed package: the wheel holds `watchfloor` alone, with its data, and installs and runs on its own."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DESIGN_FOLDERS = ("bot", "commands", "storage", "templates", "ioc")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = out.glob("watchfloor-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert top == {"watchfloor"}, top
    for needed in ("watchfloor/templates/briefing.j2", "watchfloor/templates/help.j2",
                   "watchfloor/ioc/data/cotp_zones.csv", "watchfloor/ioc/data/agencies.csv",
                   "watchfloor/storage/migrations/env.py", "watchfloor/storage/migrations/script.py.mako",
                   "watchfloor/storage/migrations/versions/0001_initial_schema.py",
                   "watchfloor/bot/cli/__init__.py", "watchfloor/commands/engine.py"):
        assert needed in names, needed
    migrations = sorted(n for n in names if n.startswith("watchfloor/storage/migrations/versions/0"))
    assert len(migrations) == len(list((ROOT / "storage/migrations/versions").glob("0*.py")))
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "watchfloor = watchfloor.bot.cli:main" in entry


def test_the_wheel_installs_into_a_fresh_venv_and_runs(wheel, tmp_path):
    # The dependencies come from this interpreter's own site-packages (no network): a venv's when the tests run
    # in one, as README's command does (`system_site_packages` would give the base interpreter's, without them).
    # A path in a .pth file is only added to sys.path: the .pth files in it (the checkout's editable install)
    # stay inert, so watchfloor comes from the wheel alone.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    (own_site,) = env_dir.glob("lib/python*/site-packages")
    packages = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    (own_site / "dependencies.pth").write_text("\n".join(packages) + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WATCHFLOOR_DB_URL")}
    out = subprocess.run([str(env_dir / "bin" / "watchfloor"), "zones"], capture_output=True, text=True,
                         cwd=tmp_path, env=clean, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 37 and any(line.startswith("LALB ") and "America/Los_Angeles" in line for line in lines)
    where = subprocess.run([str(py), "-c", "import watchfloor.bot.cli as c, watchfloor.templates as t; "
                            "print(c.__file__); print(t.render('help.j2', topic=None).text[:40])"],
                           capture_output=True, text=True, cwd=tmp_path, env=clean, timeout=60)
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(env_dir)), where.stdout  # the wheel's copy, not the checkout
    # A database made by the installed copy: migrations and zone data travel inside the package.
    made = subprocess.run([str(env_dir / "bin" / "watchfloor"), "db", "upgrade", "--db",
                           f"sqlite:///{tmp_path}/w.db"], capture_output=True, text=True, cwd=tmp_path, env=clean,
                          timeout=120)
    assert made.returncode == 0 and "database at head" in made.stdout, made.stderr


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
    return names


def test_code_imports_only_watchfloor_names():
    bare = []
    for folder in (*DESIGN_FOLDERS, "tests", "bench", "watchfloor"):
        for path in (ROOT / folder).rglob("*.py"):
            bare += [f"{path.relative_to(ROOT)}: {name}" for name in _imports(path)
                     if name.split(".")[0] in DESIGN_FOLDERS]
    assert bare == []


def test_migration_files_are_numbered_like_their_revisions():
    """`Database.upgrade` finds the head without Alembic from the file names; Alembic must agree."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from watchfloor.storage.db import MIGRATIONS, head_revision

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == head_revision()


HEAVY = ("matplotlib", "slack_bolt", "slack_sdk", "nio", "alembic", "aiohttp", "prometheus_client", "apscheduler",
         "pyais", "rich", "icalendar")


@pytest.mark.parametrize("argv", [["zones"], ["brief", "--zone", "LALB"], ["conflicts", "scan", "--zone", "LALB"],
                                  ["audit", "verify"], ["console", "--zone", "LALB", "--user", "a", "--agency", "CBP"]])
def test_cli_commands_leave_heavy_libraries_unimported(argv, tmp_path):
    """Start-up time (bench/bench_startup.py) comes from what a command imports: none of these is needed by the
    plain CLI commands, so none may be loaded (the database was upgraded before, as on a second run)."""
    db = f"sqlite:///{tmp_path}/s.db"
    subprocess.run([sys.executable, "-m", "watchfloor", "db", "upgrade", "--db", db], check=True,
                   capture_output=True, timeout=120)
    probe = ("import sys\nfrom watchfloor.bot.cli import main\nsys.argv = ['watchfloor', *sys.argv[1:]]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    extra = ["--db", db] if argv[0] != "zones" else []
    out = subprocess.run([sys.executable, "-c", probe, *argv, *extra], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120, input="!op list\n!vessel IMO9074729\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LOADED []", out.stdout[-500:]
