"""/imagine with --translate (or translate:) through discord.py against the emulator: the member is shown what the
model got, Info keeps their words and the flag."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from engine.engine_settings import EngineSettings
from engine.gpu.tiny_model import save_tiny_translator
from engine.service import Engine
from tests.bot.conftest import message_has_result
from tests.bot.test_commands import _answer
from tests.support.discord_emulator import FakeDiscord


@pytest.fixture
async def translating(make_settings: Callable[..., EngineSettings], tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine with the tiny translation model as TRANSLATE_MODEL_ID."""
    engine = Engine(make_settings(translate_model_id=str(save_tiny_translator(tmp_path / "translator"))))
    await engine.start()
    assert await engine.wait_ready(60), engine.model_error
    yield engine
    await engine.stop()


async def test_inline_translate_shows_what_the_model_got(translating: Engine, fake: FakeDiscord, start_bot) -> None:
    """The result says "Translated for the model: ..."; Info's line is the member's words with --translate."""
    async with start_bot(translating):
        inter = await fake.slash("imagine", {"prompt": "ein fuchs im schnee --translate --seed 3"})
        result = await inter.wait_original(message_has_result, timeout=60)
        info = await _answer(await fake.click("imagine:info:1", int(result["id"])))
    job = await translating.get_job(1)
    assert job is not None and job.params.typed_prompt == "ein fuchs im schnee"
    assert f"Translated for the model: \u201c{job.params.prompt}\u201d" in result["content"]
    assert "ein fuchs im schnee" in info and "--translate" in info


async def test_the_translate_option_does_the_same(translating: Engine, fake: FakeDiscord, start_bot) -> None:
    """translate: True is the option form of --translate."""
    async with start_bot(translating):
        inter = await fake.slash("imagine", {"prompt": "rote katze", "translate": True})
        await inter.wait_original(message_has_result, timeout=60)
    job = await translating.get_job(1)
    assert job is not None and job.params.translate and job.params.prompt != "rote katze"
