"""Members choose the operator's LoRAs from Discord (/imagine lora:, --lora), through discord.py against the emulator:
autocomplete, the embed, Info's line, and the buttons keep them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from engine.engine_settings import EngineSettings
from engine.gpu.tiny_model import save_tiny_lcm_lora
from engine.service import Engine
from tests.bot.conftest import message_has_result
from tests.bot.test_commands import _answer
from tests.support.discord_emulator import FakeDiscord


@pytest.fixture
async def lora_engine(make_settings: Callable[..., EngineSettings], tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine offering two tiny LoRAs: ink (with trigger words) and moss (default weight 0.5)."""
    ink, moss = (save_tiny_lcm_lora(tmp_path / name, seed=seed) for name, seed in (("ink", 3), ("moss", 4)))
    engine = Engine(make_settings(loras=f"ink={ink}|ink drawing, moss={moss}:0.5"))
    await engine.start()
    assert await engine.wait_ready(60), engine.model_error
    yield engine
    await engine.stop()


async def test_the_lora_option_runs_those_loras(lora_engine: Engine, fake: FakeDiscord, start_bot) -> None:
    """/imagine lora:"ink moss:0.25": both at those weights, the trigger words added for the model only, and the
    embed names them."""
    async with start_bot(lora_engine):
        inter = await fake.slash("imagine", {"prompt": "a fox --seed 2", "lora": "ink moss:0.25"})
        result = await inter.wait_original(message_has_result, timeout=60)
    params = (await lora_engine.get_job(1)).params
    assert params.loras == (("ink", 1.0), ("moss", 0.25)) and params.prompt == "a fox, ink drawing"
    assert params.typed_prompt == "a fox"
    fields = {f["name"]: f["value"] for f in result["embeds"][0]["fields"]}
    assert fields["LoRAs"] == "ink 1, moss 0.25"


async def test_inline_lora_and_info_line(lora_engine: Engine, fake: FakeDiscord, start_bot) -> None:
    """--lora moss in the prompt uses moss at its default weight; Info's /imagine line repeats it."""
    async with start_bot(lora_engine):
        result = await (await fake.slash("imagine", {"prompt": "a fox --lora moss --seed 2"})).wait_original(
            message_has_result, timeout=60)
        info = await _answer(await fake.click("imagine:info:1", int(result["id"])))
    assert (await lora_engine.get_job(1)).params.loras == (("moss", 0.5),)
    assert "--lora moss:0.5" in info


async def test_an_unknown_lora_lists_the_offered_ones(lora_engine: Engine, fake: FakeDiscord, start_bot) -> None:
    """A name the operator does not offer is refused privately, listing what is offered; nothing is queued."""
    async with start_bot(lora_engine):
        text = await _answer(await fake.slash("imagine", {"prompt": "a fox", "lora": "sketch"}))
    assert "LoRA 'sketch' is not offered here; choose from: ink, moss" in text
    assert await lora_engine.get_job(1) is None


async def test_reroll_and_variation_keep_the_loras(lora_engine: Engine, fake: FakeDiscord, start_bot) -> None:
    """Reroll and V of a LoRA result run with the same LoRAs."""
    async with start_bot(lora_engine):
        result = await (await fake.slash("imagine", {"prompt": "a fox --seed 2", "lora": "ink"})).wait_original(
            message_has_result, timeout=60)
        for button in ("imagine:reroll:1", "imagine:vary:1:0"):
            await (await fake.click(button, int(result["id"]))).wait_original(message_has_result, timeout=60)
    assert [(await lora_engine.get_job(i)).params.loras for i in (2, 3)] == [(("ink", 1.0),)] * 2


async def test_lora_autocomplete_offers_what_is_left(lora_engine: Engine, fake: FakeDiscord, start_bot) -> None:
    """Typing "ink m" offers "ink moss:0.5" (the chosen one first, the match at its default weight)."""
    async with start_bot(lora_engine):
        inter = await fake.slash("imagine", {"prompt": "a fox", "lora": "ink m"}, focused="lora")
        await inter.wait_acked(timeout=3)
    assert [c["value"] for c in inter.choices] == ["ink moss:0.5"]


async def test_status_lists_the_offered_loras(lora_engine: Engine, fake: FakeDiscord, start_bot) -> None:
    """/status names the LoRAs members may ask for."""
    async with start_bot(lora_engine):
        text = await _answer(await fake.slash("status"))
    assert "**LoRAs:** ink, moss (`--lora`)" in text
