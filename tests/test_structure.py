"""Structural rules: every command and option described, the admin group guild-only with its
permission hint, no SQL under cogs/, the core never imports cogs, data files valid."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from discord import app_commands

from bot.client import EXTENSIONS, StudyBot
from bot.config import Config
from bot.importing import run_import
from bot.services import Services
from bot.topics import TopicVocabulary
from tests.paths import DATA, REPO

SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
                 r"CREATE\s+TABLE)\b", re.I | re.S)


def python_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_no_sql_under_cogs():
    for path in python_files("cogs"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not SQL.search(node.value), f"SQL in {path.name}: {node.value[:60]!r}"


def test_cogs_never_reach_through_a_service_into_its_store():
    # A cog calls services (library, moderation, feeds...), never their database or stores:
    # `self.library.db.x()` or `self.feeds.store.x()` would bypass the service's own rules.
    for path in python_files("cogs"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in ("db", "store", "_store")
                    and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
                raise AssertionError(f"{path.name}:{node.lineno} reaches into "
                                     f"self.{node.value.attr}.{node.attr}")


def test_the_core_never_imports_cogs():
    for path in python_files("bot"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n == "cogs" or n.startswith("cogs.") for n in names), path


def bot_imports() -> dict[str, set[str]]:
    """Each module under bot/ -> the bot modules it imports when loaded: module-level
    imports (an import inside a function or under TYPE_CHECKING runs later or never)."""
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
               for p in python_files("bot")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        tree = ast.parse(path.read_text())
        for node in [*tree.body, *(n for t in tree.body if isinstance(t, ast.Try) for n in t.body)]:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{base}" if base else parent
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            found.update(t for t in targets if t in modules and t != name)
        graph[name] = found
    return graph


def test_no_import_cycle_among_bot_modules():
    graph = bot_imports()
    assert "bot.cli" in graph["bot.__main__"]  # the walk sees imports at all
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name):], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for module in sorted(graph):
        visit(module, [])


def test_sql_lives_in_the_database_package_only():
    database_package = REPO / "bot" / "db"
    assert (database_package / "__init__.py").is_file()
    for path in python_files("bot"):
        if path.is_relative_to(database_package):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not SQL.search(node.value), f"SQL in {path}: {node.value[:60]!r}"


@pytest.fixture
async def loaded_bot(tmp_path):
    """The bot with every extension loaded (a smoke start, without connecting)."""
    config = Config(base_dir=REPO)
    services = await Services.open(config, tmp_path / "s.db")
    bot = StudyBot(config, services)  # setup_hook minus the network:
    for name in EXTENSIONS:
        await bot.load_extension(name)
    yield bot
    await services.close()


def walk(command):
    yield command
    if isinstance(command, app_commands.Group):
        for child in command.commands:
            yield from walk(child)


async def test_every_command_and_option_is_described(loaded_bot):
    commands = loaded_bot.tree.get_commands()
    names = {c.name for c in commands}
    assert {"study", "search", "related", "topics", "help", "discuss"} <= names
    # Message commands (right-click -> Apps) have a name and no description on Discord.
    menus = {c.name for c in commands if isinstance(c, app_commands.ContextMenu)}
    assert menus == {"Find studies"}
    for top in commands:
        if isinstance(top, app_commands.ContextMenu):
            continue
        for command in walk(top):
            assert command.description and command.description != "…", command.qualified_name
            if isinstance(command, app_commands.Command):
                for parameter in command.parameters:
                    assert parameter.description and parameter.description != "…", \
                        f"{command.qualified_name} {parameter.name}"
    payload = [c.to_dict(loaded_bot.tree) for c in commands]
    assert len(payload) <= 100


async def test_admin_group_is_guild_only_with_a_permission_hint(loaded_bot):
    admin = loaded_bot.tree.get_command("studyadmin")
    assert isinstance(admin, app_commands.Group)
    assert admin.guild_only
    assert admin.default_permissions is not None and admin.default_permissions.manage_guild


async def test_studyadmin_payload_is_unchanged(loaded_bot):
    """/studyadmin as Discord receives it (names, options, descriptions, permissions), pinned:
    moving its commands between modules or cogs must not change it, nor the sync hash. After
    a deliberate change, rewrite tests/golden/studyadmin_payload.json from the new payload."""
    admin = next(c for c in loaded_bot.command_payload(None) if c["name"] == "studyadmin")
    pinned = json.loads((REPO / "tests" / "golden" / "studyadmin_payload.json").read_text())
    assert json.loads(json.dumps(admin, default=str)) == pinned


ADMIN_COG = REPO / "cogs" / "admin"
ADMIN_MODULE_MAX_LINES = 450
# Built in rendering (bot/render_admin.py, bot/components_admin.py), never in the admin cog.
RENDERED = {"Embed", "View", "Button", "Select", "ChannelSelect", "RoleSelect"}


def test_the_admin_cog_is_a_package_of_small_modules():
    modules = python_files("cogs/admin")
    assert (ADMIN_COG / "__init__.py") in modules and len(modules) >= 4
    assert not (REPO / "cogs" / "admin.py").exists()
    assert "cogs.admin" in EXTENSIONS
    for path in modules:
        lines = len(path.read_text().splitlines())
        assert lines <= ADMIN_MODULE_MAX_LINES, f"{path.name}: {lines} lines"


def test_the_admin_cog_builds_no_embed_or_view():
    for path in python_files("cogs/admin"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else \
                    func.id if isinstance(func, ast.Name) else ""
                assert name not in RENDERED, f"{path.name}:{node.lineno} builds a {name}"


def test_data_files_are_valid(tmp_path):
    import sqlite3

    from bot import importers
    from bot.db import connect_sync

    topics = TopicVocabulary.load(DATA / "topics.yaml")
    assert len(topics.topics) >= 20
    conn = connect_sync(tmp_path / "d.db")
    report = run_import(conn, importers.iter_path(DATA / "studies.yaml"), topics)
    conn.close()
    assert (report.new, len(report.invalid), report.warning_count) == (5, 0, 0)
    with sqlite3.connect(tmp_path / "d.db") as check:
        unknown = [t for (t,) in check.execute("SELECT DISTINCT topic FROM study_topics")
                   if t not in topics.topics]
    assert unknown == []
