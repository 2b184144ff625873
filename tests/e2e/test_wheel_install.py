"""The wheel as an operator installs it: built from the repo, installed (not editable) into a
fresh virtual environment, run from a folder with no data/ and no config in it. The bundled
topic vocabulary and seed studies come from the package; the database goes where the config
says; the local Discord emulator is not in the wheel."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from pathlib import Path

from tests.discord_emulator import DiscordEmulator, FileUpload
from tests.paths import OPENAPI, REPO

# The whole test (build, install, start, two commands, stop, check) stays within this.
BUDGET = 60.0
SEED_ID = "hair-mesotherapy-2012"
UPLOAD = b"""TY  - JOUR
TI  - Platelet-rich plasma for androgenetic alopecia: a pilot study
AU  - Doe, Jane
PY  - 2019
JO  - Journal of Hair Research
DO  - 10.5555/prp.pilot.2019
ER  -
"""


class Budget:
    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def left(self) -> float:
        left = self.ends - time.monotonic()
        assert left > 0, f"the wheel install test took more than {BUDGET:.0f} s"
        return left


# The local Discord emulator and the tests are not part of the program.
TEST_CODE = ("bot/testing/", "tests/")
# Where the installed program comes from, and that the test code is not importable.
PROBE = """
import importlib, bot, studybot_data
print(bot.__file__)
print(studybot_data.__file__)
for name in ("tests.discord_emulator", "tests"):
    try:
        importlib.import_module(name)
        print("importable:", name)
    except ImportError:
        pass
"""


def copy_sources(target: Path) -> None:
    """What the build reads (pyproject, README, the package folders), without the checkout's
    caches and databases: the build writes its build/ and egg-info there, not in the repo."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    folders = {setuptools.get("package-dir", {}).get(p, p) for p in setuptools["packages"]
               if "." not in p}
    target.mkdir()
    for name in ("pyproject.toml", project["project"]["readme"]):
        shutil.copy2(REPO / name, target / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.db", "*.db-*", "pending-imports")
    for folder in folders:
        shutil.copytree(REPO / folder, target / folder, ignore=ignore)


def run(argv: list[str | Path], budget: Budget, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=budget.left(), **kwargs)


def build_wheel(tmp_path: Path, budget: Budget) -> Path:
    source = tmp_path / "src"
    copy_sources(source)
    # Offline: this environment's setuptools builds it (the test extra asks for >= 70.1).
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--no-index", "-q", "-w", tmp_path / "dist", source], budget)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("studybot-*.whl")
    return wheel


def assert_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [n for n in names if n.startswith(TEST_CODE)], "the emulator is test code"
    assert {"studybot_data/topics.yaml", "studybot_data/studies.yaml"} <= names
    # Every module and migration of the program is in it (a package left out of
    # pyproject's list would be missing here).
    for folder in ("bot", "cogs"):
        for path in (REPO / folder).rglob("*"):
            relative = path.relative_to(REPO).as_posix()
            if path.suffix in (".py", ".sql") and not relative.startswith(TEST_CODE):
                assert relative in names, f"{relative} is not in the wheel"


def make_venv(tmp_path: Path, wheel: Path, budget: Budget) -> Path:
    """A fresh environment with the wheel installed, not editable. Its dependencies are
    this environment's (a .pth line, so no network): only studybot itself comes from the
    wheel, and this environment's editable install is not seen (a .pth line adds a folder,
    it does not run that folder's .pth files)."""
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], budget)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site_packages = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"], budget).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site_packages) / "studybot_test_dependencies.pth").write_text(
        "".join(f"{path}\n" for path in sorted(ours)))
    installed = run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                     "--no-index", "-q", wheel], budget)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


async def settled(emu: DiscordEmulator, handle, budget: Budget) -> dict:
    """A reply once it shows an outcome (an embed), not 'Importing…'."""
    await handle.final_message(budget.left())
    return await emu.wait_for(lambda: handle.original if handle.original and
                              handle.original["embeds"] else None, budget.left(),
                              lambda: "the import's outcome")


async def test_the_wheel_installed_elsewhere_runs_with_its_bundled_data(tmp_path):
    budget = Budget(BUDGET)
    wheel = build_wheel(tmp_path, budget)
    assert_wheel_contents(wheel)
    venv = make_venv(tmp_path, wheel, budget)
    studybot = venv / "bin" / "studybot"
    elsewhere = tmp_path / "elsewhere"  # the working directory: no data/, no config.yaml
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISCORD_TOKEN")}

    where = run([venv / "bin" / "python", "-c", PROBE], budget, cwd=elsewhere, env=env)
    assert where.returncode == 0, where.stderr
    bot_file, data_file, *test_code = where.stdout.splitlines()
    assert Path(bot_file).is_relative_to(venv) and Path(data_file).is_relative_to(venv)
    assert test_code == []

    # Without a config the database is data/studies.db in the working directory; a check
    # of one that is not there says so and creates nothing.
    check = run([studybot, "db", "check"], budget, cwd=elsewhere, env=env)
    assert check.returncode == 1
    missing = elsewhere.resolve() / "data" / "studies.db"
    assert check.stderr == f"studybot: {missing}: no such database\n"
    assert list(elsewhere.iterdir()) == []

    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    try:
        guild = emu.add_guild(name="Hair Research")
        member = emu.add_member(guild.id, "alice")
        admin = emu.add_admin(guild.id)
        # The config lives in its own folder and names no studies.* paths: the bundled ones
        # are used. Its relative database path resolves from the config's folder.
        etc = tmp_path / "etc"
        etc.mkdir()
        config = etc / "config.yaml"
        config.write_text(f"discord:\n  api_base_url: {emu.api_base_url}\n"
                          f"  dev_guild_ids: [{guild.id}]\n"
                          "database:\n  path: state/studies.db\n")
        database = etc / "state" / "studies.db"
        log_path = tmp_path / "bot.log"
        with open(log_path, "wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                studybot, "run", "--config", str(config), cwd=elsewhere, stdout=log_file,
                stderr=asyncio.subprocess.STDOUT, env={**env, "DISCORD_TOKEN": emu.token})
            try:
                await emu.wait_until_ready(budget.left())
                await emu.wait_for(lambda: bool(emu.commands(guild.id)), budget.left(),
                                   what="commands synced")
                card = await emu.run_command(guild.id, guild.default_channel_id, member,
                                             "study", {"study": SEED_ID})
                embed = (await card.final_message(budget.left()))["embeds"][0]
                assert embed["footer"]["text"].startswith(f"id: {SEED_ID} · ")
                assert embed["title"].startswith("Hair Mesotherapy")
                # An upload is read by the installed package's parse worker, waits beside the
                # database, and is imported on Confirm.
                preview = await settled(emu, await emu.run_command(
                    guild.id, guild.default_channel_id, admin, "studyadmin import",
                    {"file": FileUpload("pilot.ris", UPLOAD)}), budget)
                assert preview["embeds"][0]["title"] == "Preview: pilot.ris", preview
                confirm = next(c["custom_id"] for row in preview["components"]
                               for c in row["components"] if c["custom_id"].endswith(":y"))
                done = await settled(emu, await emu.click(preview, confirm, admin), budget)
                assert done["embeds"][0]["title"] == "Imported: pilot.ris", done
                help_reply = await emu.run_command(guild.id, guild.default_channel_id, member,
                                                   "help", {})
                help_footer = (await help_reply.final_message(budget.left())
                               )["embeds"][0]["footer"]["text"]
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(process.wait(), budget.left())
        log = log_path.read_text()
        assert code == 0, log
        assert f"no study database at {database.resolve()}: created" in log
        assert "imported studies.yaml:" in log
        assert "Traceback" not in log and emu.token not in log
        emu.assert_no_violations()
    finally:
        await emu.close()

    assert list(elsewhere.iterdir()) == []  # nothing was written in the working directory
    check = run([studybot, "db", "check", "--config", config], budget, cwd=elsewhere, env=env)
    assert check.returncode == 0 and "integrity: ok" in check.stdout, check.stderr
    stats = run([studybot, "db", "stats", "--json", "--config", config], budget,
                cwd=elsewhere, env=env)
    counts = json.loads(stats.stdout)
    assert counts["path"] == str(database) and counts["studies"] > 0 and counts["topics"] > 0
    assert help_footer.startswith(f"{counts['studies']:,} studies · {counts['topics']:,} topics")
    shown = run([studybot, "show", "10.5555/prp.pilot.2019", "--json", "--config", config],
                budget, cwd=elsewhere, env=env)
    assert json.loads(shown.stdout)["title"].startswith("Platelet-rich plasma"), shown.stderr
    # Tagged from the bundled topic vocabulary.
    assert set(json.loads(shown.stdout)["topics"]) == {"prp", "androgenetic-alopecia"}
