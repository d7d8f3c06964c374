"""The systemd units in docs/deploy/: valid for systemd (``systemd-analyze verify`` where it is installed), and
holding the rules docs/operators.md promises (a user of its own, restarts, no secret on a command line)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "docs" / "deploy").glob("*.service"))
SECRET = re.compile(r"--pass|--user|password|token|secret", re.IGNORECASE)


def sections(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as systemd reads it: sections of key=value lines (keys may repeat)."""
    parsed: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = parsed.setdefault(line.strip("[]"), [])
            continue
        assert current is not None and "=" in line, f"{path.name}: {line!r} is outside a section or no key=value"
        key, value = line.split("=", 1)
        current.append((key.strip(), value.strip()))
    return parsed


def test_there_are_units_for_the_bot_nats_and_workers() -> None:
    """One unit for the bot host, one for the NATS server, a template for GPU workers."""
    assert {u.name for u in UNITS} == {"imagine.service", "imagine-nats.service", "imagine-worker@.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_a_unit_runs_as_its_own_user_restarts_and_keeps_secrets_off_the_command_line(unit: Path) -> None:
    """User=imagine, Restart=on-failure, ExecStart from the venv, no password or token on any command line."""
    service = dict(sections(unit)["Service"])
    assert service["User"] == "imagine" and service["Restart"] == "on-failure" and service["UMask"] == "0077"
    commands = [v for k, v in sections(unit)["Service"] if k.startswith("Exec")]
    assert commands and all(c.startswith("/opt/imagine/.venv/bin/") for c in commands)
    assert not any(SECRET.search(c) for c in commands)
    assert "WantedBy" in dict(sections(unit)["Install"])


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_what_a_unit_starts_exists_in_the_repository(unit: Path) -> None:
    """Each command names a module or binary this repository provides (python -m bot, engine.worker, nats-server)."""
    for key, command in sections(unit)["Service"]:
        if not key.startswith("Exec"):
            continue
        argv = command.split()
        if argv[0].endswith("/python"):
            module = argv[argv.index("-m") + 1]
            assert (ROOT / module.replace(".", "/")).with_suffix(".py").exists() or \
                (ROOT / module.replace(".", "/") / "__main__.py").exists(), module
        else:
            assert argv[0].endswith("/nats-server") and "-c" in argv


def test_systemd_accepts_every_unit(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on each unit, with /opt/imagine pointing at this checkout (where systemd is
    installed; the parser tests above run everywhere)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here; the parser tests cover the units")
    copies = []
    for unit in UNITS:
        # the venv's programs are beside this interpreter (wherever the checkout's venv lives)
        text = (unit.read_text().replace("/opt/imagine/.venv/bin", str(Path(sys.executable).parent))
                .replace("/opt/imagine", str(ROOT)).replace("=imagine\n", "=root\n"))
        name = unit.name.replace("@.", "@0.")
        (tmp_path / name).write_text(text)
        copies.append(f"./{name}")
    done = subprocess.run([analyze, "verify", *copies], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
