"""Members pick the operator's models from Discord (/imagine model:, --model), and a server sets its default model
(/settings defaults model:), through discord.py against the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from engine.engine_settings import EngineSettings
from engine.gpu.tiny_model import save_tiny_model
from engine.service import Engine
from tests.bot.conftest import message_has_result
from tests.bot.test_commands import _answer
from tests.support.discord_emulator import ADMINISTRATOR, FakeDiscord


@pytest.fixture
async def two_models(make_settings: Callable[..., EngineSettings], tiny_model_dir: Path,
                     tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine offering the tiny model as "base" (the default) and another tiny model as "other"."""
    other = save_tiny_model(tmp_path / "other", seed=7)
    engine = Engine(make_settings(models=f"base={tiny_model_dir}, other={other}"))
    await engine.start()
    assert await engine.wait_ready(60), engine.model_error
    yield engine
    await engine.stop()


async def test_the_model_option_offers_and_uses_the_models(two_models: Engine, fake: FakeDiscord,
                                                           start_bot) -> None:
    """/imagine's model option offers base and other as you type; other runs on it, and the embed and Info say so."""
    async with start_bot(two_models):
        offered = await fake.slash("imagine", {"prompt": "a fox", "model": ""}, focused="model")
        await offered.wait_acked(timeout=3)
        assert [c["value"] for c in offered.choices] == ["base", "other"]
        result = await (await fake.slash("imagine", {"prompt": "a fox --seed 2", "model": "other"})).wait_original(
            message_has_result, timeout=60)
        info = await _answer(await fake.click("imagine:info:1", int(result["id"])))
    assert (await two_models.get_job(1)).params.model == "other"
    assert {f["name"]: f["value"] for f in result["embeds"][0]["fields"]}["Model"] == "other"
    assert "--model other" in info


async def test_inline_model_and_an_unknown_one(two_models: Engine, fake: FakeDiscord, start_bot) -> None:
    """--model other works inline; --model sdxl is refused privately with the list."""
    async with start_bot(two_models):
        await (await fake.slash("imagine", {"prompt": "a fox --model other"})).wait_original(
            message_has_result, timeout=60)
        text = await _answer(await fake.slash("imagine", {"prompt": "a fox --model sdxl"}))
    assert (await two_models.get_job(1)).params.model == "other"
    assert "model 'sdxl' is not offered here; choose from: base, other" in text


async def test_a_servers_default_model_from_settings(two_models: Engine, fake: FakeDiscord, start_bot) -> None:
    """/settings defaults model:other makes other this server's default; Reroll keeps the job's model."""
    async with start_bot(two_models):
        saved = await _answer(await fake.slash("settings defaults", {"model": "other"},
                                               permissions=ADMINISTRATOR))
        result = await (await fake.slash("imagine", {"prompt": "a fox"})).wait_original(message_has_result, timeout=60)
        await (await fake.click("imagine:reroll:1", int(result["id"]))).wait_original(message_has_result, timeout=60)
    assert "Model other" in saved
    assert [(await two_models.get_job(i)).params.model for i in (1, 2)] == ["other", "other"]


async def test_a_servers_list_of_models_and_loras(two_models: Engine, fake: FakeDiscord, start_bot) -> None:
    """/settings limits models:other: the option offers other alone, a request without a model runs on it (the
    first allowed), and base is refused with the list; an earlier base job's Reroll is refused too."""
    async with start_bot(two_models):
        before = await (await fake.slash("imagine", {"prompt": "a fox --model base"})).wait_original(
            message_has_result, timeout=60)
        saved = await _answer(await fake.slash("settings limits", {"models": "other"}, permissions=ADMINISTRATOR))
        offered = await fake.slash("imagine", {"prompt": "a fox", "model": ""}, focused="model")
        await offered.wait_acked(timeout=3)
        await (await fake.slash("imagine", {"prompt": "a fox"})).wait_original(message_has_result, timeout=60)
        refused = await _answer(await fake.slash("imagine", {"prompt": "a fox --model base"}))
        reroll = await _answer(await fake.click("imagine:reroll:1", int(before["id"])))
    assert "Models members may choose: other" in saved
    assert [c["value"] for c in offered.choices] == ["other"]
    assert (await two_models.get_job(2)).params.model == "other"
    assert "model 'base' is not offered here; choose from: other" in refused
    assert "base is not allowed here" in reroll


async def test_a_model_added_in_the_panel_is_offered_with_its_description(two_models: Engine, fake: FakeDiscord,
                                                                          start_bot, tiny_model_dir: Path) -> None:
    """The catalogue gains "anime" with a description and an NSFW mark: the next autocomplete lists it with both."""
    from engine.rules.catalogue import make_model

    await two_models.catalogue.save(make_model("anime", str(tiny_model_dir), "flat colours, bold outlines", True))
    async with start_bot(two_models):
        offered = await fake.slash("imagine", {"prompt": "a fox", "model": "an"}, focused="model")
        await offered.wait_acked(timeout=3)
    assert offered.choices == [{"name": "anime (nsfw channels only) \u2014 flat colours, bold outlines",
                                "value": "anime"}]
