"""Models tab through gradio_client: the catalogue of models and LoRAs, and what a server allows; a LoRA added here
is used by the Playground's next image."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.gpu.tiny_model import save_tiny_lcm_lora


@pytest.fixture(scope="module")
def ink(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LoRA of its own."""
    return save_tiny_lcm_lora(tmp_path_factory.mktemp("ink"), seed=3)


async def test_a_lora_saved_in_the_tab_is_used_by_the_playground(call, engine, ink: Path):
    """Save a LoRA with a description: the table lists it, requests may name it, and the Playground's image uses
    it (its parameters name it)."""
    message, table, _pick = await call("/save_entry", "LoRA", "ink", str(ink), 0.8, "ink drawing", "bold lines",
                                       False)
    assert "Saved the LoRA 'ink'" in message and "bold lines" in table and "weight 0.8" in table
    assert [(e.name, e.weight, e.triggers) for e in engine.policy.limits.loras] == [("ink", 0.8, "ink drawing")]
    status, _preview, gallery, _summary, details = await call(
        "/generate", "a fox", "", "64x64", 2, 5.0, 9, 1, "euler", False, False, "ink")
    assert "Done" in status and len(gallery) == 1
    assert details["loras"] == [["ink", 0.8]] and "ink drawing" in details["prompt"]


async def test_a_source_that_is_not_there_is_refused_in_the_tab(call, engine, tmp_path: Path):
    """A path that does not exist on this host is not saved, and the message says why."""
    message, *_ = await call("/save_entry", "Model", "gone", str(tmp_path / "nowhere"), 1.0, "", "", False)
    assert "Not saved" in message and "neither a hub id" in message
    assert [e.name for e in engine.policy.limits.models] == [engine.catalogue.default_model]


async def test_the_default_model_cannot_be_removed_in_the_tab(call, engine):
    """Remove on the default model says to change .env instead."""
    message, *_ = await call("/remove_entry", "Model", engine.catalogue.default_model)
    assert "Not removed" in message and "change MODELS in .env" in message


async def test_remove_and_reset_an_env_lora(call, engine, ink: Path):
    """A panel-added LoRA is removed for good; Reset of a name .env does not have says there is nothing to reset."""
    await call("/save_entry", "LoRA", "ink", str(ink), 1.0, "", "", False)
    message, table, _pick = await call("/remove_entry", "LoRA", "ink")
    assert "Removed the LoRA 'ink'" in message and "ink" not in engine.policy.limits.loras
    message, *_ = await call("/reset_entry", "LoRA", "ink")
    assert "Not reset" in message and "no panel edit of an .env entry" in message


async def test_a_servers_allowed_loras_and_default_model(call, engine, ink: Path):
    """The lists saved for a server bound its requests, and reading them back shows them."""
    await call("/save_entry", "LoRA", "ink", str(ink), 1.0, "", "", False)
    await call("/save_entry", "LoRA", "moss", str(ink), 0.5, "", "", False)
    default = engine.catalogue.default_model
    message = await call("/save_allowed", "111", default, [default], ["moss"])
    assert "Saved what server" in message and "(111) allows" in message
    d = engine.policy.defaults("111")
    assert (d.model, d.models_allowed, d.loras_allowed) == (default, (default,), ("moss",))
    assert engine.policy.defaults().loras_allowed == ()
    _model, _models, loras, _note = await call("/load_allowed", "111")
    assert loras["value"] == ["moss"] and [tuple(c) for c in loras["choices"]] == [("ink", "ink"), ("moss", "moss")]
