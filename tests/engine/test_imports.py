"""Dependency direction: the engine never imports the Discord or Gradio front doors (checked in fresh processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FRONT_DOORS = ("discord", "gradio", "bot", "admin_ui", "fastapi", "uvicorn")

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
import engine
names = sorted(m.name for m in pkgutil.walk_packages(engine.__path__, "engine."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""

IMPORT_SERVICE_AND_CLI = """
import json, sys
import engine.service, engine.__main__
print(json.dumps({"imported": ["engine.service", "engine.__main__"], "modules": sorted(sys.modules)}))
"""


def modules_after(code: str) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter and return what it reports."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def front_door_modules(modules: list[str]) -> list[str]:
    """Loaded modules that belong to a front door or its web stack."""
    return [m for m in modules if m.split(".")[0] in FRONT_DOORS]


def test_every_engine_module_imports_without_front_doors() -> None:
    """Importing every module of the engine package loads no discord, gradio, bot or admin_ui module."""
    report = modules_after(IMPORT_EVERYTHING)
    assert {"engine.service", "engine.gpu.pipeline", "engine.jobs.store", "engine.__main__"} <= set(report["imported"])
    assert set(report["imported"]) <= set(report["modules"])
    assert front_door_modules(report["modules"]) == []


def test_service_and_cli_import_without_front_doors() -> None:
    """`import engine.service, engine.__main__` loads no discord or gradio module."""
    report = modules_after(IMPORT_SERVICE_AND_CLI)
    assert "engine.service" in report["modules"]
    assert front_door_modules(report["modules"]) == []


def test_engine_source_names_no_front_door() -> None:
    """No engine source file imports from the front doors, even lazily inside a function."""
    offenders = []
    for path in sorted((REPO / "engine").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from") and words[1].split(".")[0] in FRONT_DOORS:
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_single_process_engine_never_imports_nats() -> None:
    """With NATS_URL unset, the service and the CLI load no nats module (scale-out is optional)."""
    report = modules_after(IMPORT_SERVICE_AND_CLI)
    assert [m for m in report["modules"] if m.split(".")[0] == "nats"] == []
