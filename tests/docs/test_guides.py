"""Every command in the README and the guides (docs/*.md) is one this repository can run: each script exists and
parses, each ``python -m`` module answers ``--help`` (with the subcommand or option the guide uses), the files a
command names exist, and the per-role users command runs for real. A command of a kind this test does not know
fails it, so a new one cannot slip in untested."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SYSTEM = {"cp", "cat", "echo", "rsync", "git", "ssh", "journalctl", "useradd", "chown", "systemctl", "chmod"}
REPO_PATH = re.compile(r"^(docs|scripts|engine|bot|admin_ui|imagine)/|^\.env\.example$")


def commands() -> list[tuple[str, list[str]]]:
    """(guide, argv) for every command of every ```bash block, continuation lines joined, env prefixes dropped."""
    found = []
    for guide in GUIDES:
        for block in re.findall(r"```bash\n(.*?)```", guide.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                part: list[str] = []
                for word in [*words, "&&"]:
                    if word in ("&&", ";", "&", "|", ">>", ">"):
                        if part:
                            found.append((guide.name, part))
                        part = [] if word not in (">>", ">") else ["#redirect"]
                        continue
                    if part == ["#redirect"]:
                        part = []
                        continue
                    if not part and (re.match(r"^[A-Z_]+=", word) or word == "sudo"):
                        continue
                    part.append(word)
    return found


COMMANDS = commands()


def test_the_guides_have_commands() -> None:
    """The collection itself works: the quick start's three commands are among them."""
    argvs = [argv for _, argv in COMMANDS]
    assert ["scripts/serve.sh"] in argvs and ["scripts/test.sh"] in argvs and ["cp", ".env.example", ".env"] in argvs


@pytest.mark.parametrize("guide,argv", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_guides_command_can_run(guide: str, argv: list[str], tmp_path: Path) -> None:
    """Scripts exist and parse; modules answer --help naming the subcommand used; named repo files exist."""
    command = argv[0]
    if command.startswith("scripts/"):
        script = ROOT / command
        assert script.is_file() and script.stat().st_mode & 0o111, f"{guide}: {command} is missing or not executable"
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    elif command in ("python", ".venv/bin/python", "python3"):
        assert argv[1] == "-m", f"{guide}: {argv}"
        module, rest = argv[2], argv[3:]
        done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{guide}: python -m {module} --help failed: {done.stderr[-500:]}"
        words = [w for w in rest if re.fullmatch(r"[a-z][a-z-]*|--[a-z][a-z-]*", w)]
        assert all(w in done.stdout for w in words[:1]), f"{guide}: python -m {module} has no {words[:1]}"
    else:
        assert command in SYSTEM, f"{guide}: {' '.join(argv)}: add a check for {command!r} to this test"
    for word in argv[1:]:
        if REPO_PATH.match(word):
            assert list(ROOT.glob(word)), f"{guide}: {word} does not exist"


def test_the_per_role_users_command_runs(tmp_path: Path) -> None:
    """The several-GPUs guide's first command, run: it writes the server configuration and an env file per user,
    private, and prints no password."""
    done = subprocess.run([sys.executable, "-m", "engine.remote.auth_config", "--worker", "gpu0", "--worker", "gpu1",
                           "--out", str(tmp_path / "auth")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    written = {p.name for p in (tmp_path / "auth").iterdir()}
    assert written == {"nats-server.conf", "bot.env", "worker-gpu0.env", "worker-gpu1.env"}
    password = (tmp_path / "auth" / "bot.env").read_text().split("NATS_PASSWORD=")[1].split()[0]
    assert password not in done.stdout and all(p.stat().st_mode & 0o077 == 0 for p in (tmp_path / "auth").iterdir())
