"""deploy/ works as written: the units, the example config and the commands they run agree
(the user, the state directory, the database and backup paths), and systemd accepts them."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import build_parser
from bot.config import load_config
from tests.paths import DATA, REPO

DEPLOY = REPO / "deploy"
INSTALLED_CONFIG = "/etc/studybot/config.yaml"  # where deploy/README.md installs config.yaml
PROGRAM = "/opt/studybot/venv/bin/studybot"


def unit(name: str) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file (every value of a key repeated), across sections."""
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key, []).append(value)
    return values


def one(values: dict[str, list[str]], key: str) -> str:
    assert len(values.get(key, [])) == 1, f"{key}: {values.get(key)}"
    return values[key][0]


def state_directories(values: dict[str, list[str]]) -> list[Path]:
    return [Path("/var/lib", d) for v in values["StateDirectory"] for d in v.split()]


def test_the_example_config_puts_the_database_in_the_state_directory():
    service = unit("studybot.service")
    config = load_config(DEPLOY / "config.yaml")
    assert config.database_path == Path("/var/lib/studybot/studies.db")
    assert config.database_path.parent in state_directories(service)
    # No studies.* paths: the bundled topics and seed studies, whatever folder it lives in.
    assert config.topics_path.read_bytes() == (DATA / "topics.yaml").read_bytes()
    assert [p.read_bytes() for p in config.source_paths] == [
        (DATA / "studies.yaml").read_bytes()]


def test_the_service_runs_as_its_own_user_sandboxed():
    service = unit("studybot.service")
    user = (DEPLOY / "sysusers.conf").read_text().split("\nu ")[1].split()[0]
    assert one(service, "User") == user == "studybot"
    assert one(service, "StateDirectory") == "studybot"
    assert one(service, "UMask") == "0077"
    assert one(service, "MemoryMax") == "1G"
    assert one(service, "ProtectSystem") == "strict"
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert one(service, key) == "yes", key
    # The state directory is writable under ProtectSystem=strict; nothing else may be.
    assert "ReadWritePaths" not in service
    # The token comes from an environment file, never from the config.
    assert one(service, "EnvironmentFile") == "/etc/studybot/token.env"
    assert "token" not in (DEPLOY / "config.yaml").read_text().replace(
        "token.env", "").replace("The token is NOT", "")
    argv = shlex.split(one(service, "ExecStart"))
    assert argv[0] == PROGRAM
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.config) == ("run", INSTALLED_CONFIG)


def test_the_backup_writes_where_its_user_may_and_is_rotated():
    backup, timer = unit("studybot-backup.service"), unit("studybot-backup.timer")
    assert one(backup, "User") == "studybot" and one(backup, "UMask") == "0077"
    argv = shlex.split(one(backup, "ExecStart"))
    assert argv[0] == PROGRAM
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.action, args.config) == ("db", "backup", INSTALLED_CONFIG)
    assert args.keep == 14
    # The backups folder is a state directory of that unit: systemd makes it, owned by studybot.
    assert Path(args.target) in state_directories(backup)
    assert one(timer, "OnCalendar") == "daily" and one(timer, "Persistent") == "true"


def test_the_backup_command_as_written_against_the_example_config(tmp_path):
    """The unit's backup command, with /var/lib/studybot moved to a temp folder, under the
    unit's umask: a dated private copy of the database, the older ones beyond 14 removed."""
    state = tmp_path / "var-lib-studybot"
    (state / "backups").mkdir(parents=True)
    config = tmp_path / "config.yaml"
    config.write_text((DEPLOY / "config.yaml").read_text().replace("/var/lib/studybot",
                                                                   str(state)))
    argv = shlex.split(one(unit("studybot-backup.service"), "ExecStart"))[1:]
    argv = [a.replace("/var/lib/studybot", str(state)).replace(INSTALLED_CONFIG, str(config))
            for a in argv]
    studybot = [sys.executable, "-m", "bot"]
    seeded = subprocess.run([*studybot, "import", "--config", str(config),
                             str(DATA / "studies.yaml")], capture_output=True, text=True,
                            timeout=60)
    assert seeded.returncode == 0, seeded.stderr
    for day in range(1, 16):  # 15 older backups: with the new one, the two oldest go
        (state / "backups" / f"studies-202001{day:02d}T000000Z.db").write_text("old")
    result = subprocess.run(studybot + argv, capture_output=True, text=True, timeout=60,
                            preexec_fn=lambda: os.umask(0o077))
    assert result.returncode == 0, result.stderr
    kept = sorted(p.name for p in (state / "backups").iterdir())
    assert len(kept) == 14 and kept[0] == "studies-20200103T000000Z.db"
    made = state / "backups" / kept[-1]
    assert made.name.startswith("studies-2") and not made.name.startswith("studies-2020")
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    check = subprocess.run([*studybot, "db", "check", "--db", str(made)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and "integrity: ok" in check.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_systemd_accepts_the_units(tmp_path):
    # verify checks that ExecStart's program exists: point it at this environment's studybot.
    here = Path(sys.executable).parent / "studybot"
    names = ("studybot.service", "studybot-backup.service", "studybot-backup.timer")
    for name in names:
        (tmp_path / name).write_text((DEPLOY / name).read_text().replace(PROGRAM, str(here)))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
