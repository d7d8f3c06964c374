"""Shared fixtures: the tiny SDXL model (built offline once per run) and engine settings for it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

# keep tests hermetic: no hub traffic, no analytics, no developer .env
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from engine.engine_settings import AccelerationSettings, EngineSettings, RemoteSettings  # noqa: E402
from engine.gpu.tiny_model import save_tiny_classifier, save_tiny_lcm_lora, save_tiny_model  # noqa: E402
from engine.service import Engine  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SDXL pipeline saved in diffusers format (loaded through from_pretrained)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="session")
def tiny_lora_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A tiny random LCM-style LoRA for the tiny UNet."""
    return save_tiny_lcm_lora(tmp_path_factory.mktemp("tiny-lora"))


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Tiny NSFW image classifiers (SAFETY_MODEL_ID) for from_pretrained, built once per run.

    ``tiny_classifier_dir()`` has random weights that score different images clearly differently;
    ``tiny_classifier_dir(0.9)`` gives every image an NSFW score of 0.9.
    """
    made: dict[float | None, Path] = {}

    def get(score: float | None = None) -> Path:
        if score not in made:
            made[score] = save_tiny_classifier(tmp_path_factory.mktemp("tiny-classifier"), score=score)
        return made[score]

    return get


TINY_ENV: dict[str, Any] = {
    "device": "cpu",
    "sizes": "64x64,96x64,64x96",
    "default_size": "64x64",
    "default_steps": 2,
    "preview_interval": 0,
    "max_batch": 4,
}


@pytest.fixture
def make_settings(tmp_path: Path, tiny_model_dir: Path, tiny_lora_dir: Path) -> Callable[..., EngineSettings]:
    """Build EngineSettings for the tiny model in a fresh DATA_DIR; keyword overrides by field name."""

    def factory(**overrides: Any) -> EngineSettings:
        values: dict[str, Any] = dict(TINY_ENV, model_id=str(tiny_model_dir), data_dir=tmp_path / "data",
                                      fast_lora_id=str(tiny_lora_dir))
        values.update(overrides)
        switches = {k: values.pop(k) for k in list(values) if k in AccelerationSettings.model_fields}
        remote = {k: values.pop(k) for k in list(values) if k in RemoteSettings.model_fields}
        return EngineSettings(_env_file=None, accel=AccelerationSettings(_env_file=None, **switches),
                              remote=RemoteSettings(_env_file=None, **remote), **values)

    return factory


@pytest.fixture
async def engine(make_settings: Callable[..., EngineSettings]) -> AsyncIterator[Engine]:
    """A started engine on the tiny model, with the model loaded."""
    eng = Engine(make_settings())
    await eng.start()
    assert await eng.wait_ready(60), eng.model_error
    yield eng
    await eng.stop()
