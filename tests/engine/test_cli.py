"""``python -m engine generate`` run as a real subprocess on the tiny model.

The generating runs are started together once per module (each pays the torch/diffusers import),
and each test checks one behaviour of one run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SEED_LINE = re.compile(r"^seed: (\d+)$", re.MULTILINE)


@dataclass
class Run:
    """One finished CLI run."""

    returncode: int
    stdout: str
    stderr: str
    out: Path

    def pixels(self) -> np.ndarray:
        """The written image as an integer array."""
        with Image.open(self.out) as img:
            return np.asarray(img.convert("RGB")).astype(np.int16)

    def seed(self) -> int:
        """The seed the run printed."""
        match = SEED_LINE.search(self.stdout)
        assert match, self.stdout
        return int(match.group(1))


FOX = ["--prompt", "a red fox", "--width", "64", "--height", "64", "--steps", "2"]
RUNS: dict[str, tuple[list[str], dict[str, str]]] = {
    # name: (arguments after "generate", extra environment); SIZES is the SDXL list unless set here
    "fox7": ([*FOX, "--seed", "7"], {}),
    "fox7_again": ([*FOX, "--seed", "7"], {"SIZES": "64x64,96x64"}),
    "no_seed": (FOX, {}),
    "not_multiple_of_8": (["--prompt", "a red fox", "--width", "60", "--height", "64"], {}),
    "width_only": (["--prompt", "a red fox", "--width", "64"], {}),
    "bad_steps": (["--prompt", "a red fox", "--width", "64", "--height", "64", "--steps", "0"], {}),
    "bad_suffix": (["--prompt", "a red fox", "--width", "64", "--height", "64", "--out", "fox.gif"], {}),
    "bad_env": (["--prompt", "a red fox"], {"DEVICE": "gpu"}),
}


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every CLI run above, started in parallel, in a clean working directory and environment."""
    work = tmp_path_factory.mktemp("cli")
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("SIZES", "DEFAULT_SIZE", "DEFAULT_STEPS", "DEFAULT_GUIDANCE", "DATA_DIR", "DTYPE",
                             "DEFAULT_NEGATIVE_PROMPT", "DEFAULT_SCHEDULER", "VAE_ID")}
    base_env.update(MODEL_ID=str(tiny_model_dir), DEVICE="cpu", HF_HUB_OFFLINE="1", FAST_LORA_ID="",
                    PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = {}
    for name, (args, extra) in RUNS.items():
        out = work / f"{name}.png"
        argv = [sys.executable, "-m", "engine", "generate", *args]
        if "--out" not in args:
            argv += ["--out", str(out)]
        procs[name] = (subprocess.Popen(argv, cwd=work, env={**base_env, **extra}, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True), out)
    done = {}
    for name, (proc, out) in procs.items():
        stdout, stderr = proc.communicate(timeout=240)
        done[name] = Run(proc.returncode, stdout, stderr, out)
    return done


def test_writes_image_of_requested_size(runs: dict[str, Run]) -> None:
    """generate writes a 64x64 image to --out and exits 0."""
    run = runs["fox7"]
    assert run.returncode == 0, run.stderr
    with Image.open(run.out) as img:
        assert (img.format, img.size) == ("PNG", (64, 64))


def test_prints_the_seed(runs: dict[str, Run]) -> None:
    """The seed used is printed on stdout."""
    assert runs["fox7"].seed() == 7


def test_png_carries_the_parameters(runs: dict[str, Run]) -> None:
    """The PNG written by the CLI holds the prompt and seed in its text chunks."""
    with Image.open(runs["fox7"].out) as img:
        meta = json.loads(img.text["imagine"])
    assert (meta["prompt"], meta["seed"], meta["steps"]) == ("a red fox", 7, 2)


def test_same_seed_gives_identical_pixels(runs: dict[str, Run]) -> None:
    """A second run with the same seed writes exactly the same pixels."""
    assert runs["fox7_again"].returncode == 0, runs["fox7_again"].stderr
    assert np.array_equal(runs["fox7"].pixels(), runs["fox7_again"].pixels())


def test_other_seed_gives_different_pixels(runs: dict[str, Run]) -> None:
    """A run with another seed (here the random one) writes a clearly different image."""
    run = runs["no_seed"]
    assert run.returncode == 0, run.stderr
    assert run.seed() != 7
    assert np.abs(runs["fox7"].pixels() - run.pixels()).mean() > 10


def test_size_outside_sizes_warns(runs: dict[str, Run]) -> None:
    """A valid size that is not in SIZES (64x64 vs the SDXL list) is generated with a warning."""
    assert re.search(r"^warning: 64x64 is not one of SIZES", runs["fox7"].stderr, re.MULTILINE)


def test_size_in_sizes_does_not_warn(runs: dict[str, Run]) -> None:
    """A size listed in SIZES gives no warning."""
    assert not re.search(r"^warning:", runs["fox7_again"].stderr, re.MULTILINE)


def test_omitted_seed_prints_the_random_seed_used(runs: dict[str, Run]) -> None:
    """Without --seed a random seed is drawn, printed, and is the one in the image's metadata."""
    run = runs["no_seed"]
    assert run.returncode == 0, run.stderr
    with Image.open(run.out) as img:
        assert json.loads(img.text["imagine"])["seed"] == run.seed()


@pytest.mark.parametrize(("name", "message"), [
    ("not_multiple_of_8", "width 60 is not allowed; use a multiple of 8 from 64 to 2048"),
    ("width_only", "give both --width and --height"),
    ("bad_steps", "steps must be from 1 to 60"),
    ("bad_suffix", "--out must end in .png, .webp, .jpg or .jpeg"),
    ("bad_env", "DEVICE: 'gpu' is not a device"),
])
def test_invalid_input_exits_2_with_message(runs: dict[str, Run], name: str, message: str) -> None:
    """Invalid arguments or settings exit with code 2 and say what is wrong, writing nothing."""
    run = runs[name]
    assert run.returncode == 2 and message in run.stderr
    assert not run.out.exists()
