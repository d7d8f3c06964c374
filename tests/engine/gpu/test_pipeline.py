"""Running the pipeline: batched calls, seeds, schedulers, previews, variations, fast mode."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.engine_settings import SCHEDULERS, EngineSettings
from engine.gpu.model import LoadedModel, ModelLoadError, load_fast_lora, load_model
from engine.gpu.pipeline import GenerationInterrupted, ImageSpec, latents_preview, run_batch


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> LoadedModel:
    """The tiny model loaded once for this module, quality mode only."""
    return load_model(EngineSettings(_env_file=None, model_id=str(tiny_model_dir), device="cpu", sizes="64x64"))


def generate(model: LoadedModel, *seeds: int, prompt: str = "a red fox", **kwargs) -> list[np.ndarray]:
    """Run one call and return the images as integer arrays."""
    options = {"width": 64, "height": 64, "steps": 2, "guidance": 5.0, "scheduler": "euler", **kwargs}
    images = run_batch(model, [ImageSpec(prompt, "", s) for s in seeds], **options)
    return [np.asarray(img.convert("RGB")).astype(np.int16) for img in images]


# --- running -------------------------------------------------------------------------------------


def test_batch_returns_one_image_per_spec_at_size(model: LoadedModel) -> None:
    """One call returns one PIL image per spec, at the requested size."""
    images = run_batch(model, [ImageSpec("a", "", 1), ImageSpec("b", "ugly", 2)], width=96, height=64, steps=2,
                       guidance=5.0, scheduler="euler")
    assert [img.size for img in images] == [(96, 64), (96, 64)]


def test_same_seed_is_reproducible(model: LoadedModel) -> None:
    """The same seed and prompt give the same pixels on a second call."""
    assert np.array_equal(generate(model, 5)[0], generate(model, 5)[0])


def test_seed_is_independent_of_batch_position(model: LoadedModel) -> None:
    """A seed's image does not depend on where it sits in the batch."""
    alone = generate(model, 7)[0]
    batched = generate(model, 1, 2, 7)[2]
    assert np.abs(alone - batched).max() <= 2


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_offered_scheduler_runs(model: LoadedModel, scheduler: str) -> None:
    """Each scheduler users may pick runs on the model's own scheduler config."""
    (image,) = generate(model, 3, scheduler=scheduler, steps=3)
    assert image.shape == (64, 64, 3) and image.std() > 0


def test_on_step_reports_every_step(model: LoadedModel) -> None:
    """on_step is called once per step with (step, total); latents only when asked for."""
    seen: list[tuple[int, int, bool]] = []
    run_batch(model, [ImageSpec("a", "", 1)], width=64, height=64, steps=3, guidance=5.0, scheduler="euler",
              on_step=lambda s, t, lat: seen.append((s, t, lat is not None)), want_latents=lambda s: s == 2)
    assert seen == [(1, 3, False), (2, 3, True), (3, 3, False)]


def test_should_stop_interrupts_the_call(model: LoadedModel) -> None:
    """should_stop returning True stops the denoising loop and raises GenerationInterrupted."""
    steps: list[int] = []
    with pytest.raises(GenerationInterrupted):
        run_batch(model, [ImageSpec("a", "", 1)], width=64, height=64, steps=10, guidance=5.0, scheduler="euler",
                  on_step=lambda s, t, lat: steps.append(s), should_stop=lambda: len(steps) >= 2)
    assert steps == [1, 2]


# --- variations (image-to-image) -----------------------------------------------------------------


def vary(model: LoadedModel, source: Image.Image, seed: int, strength: float, **kwargs) -> np.ndarray:
    """One variation of ``source`` as an integer array."""
    options = {"width": 64, "height": 64, "steps": 4, "guidance": 5.0, "scheduler": "euler", **kwargs}
    (image,) = run_batch(model, [ImageSpec("a red fox", "", seed)], init_images=[source], strength=strength,
                         **options)
    return np.asarray(image.convert("RGB")).astype(np.int16)


@pytest.fixture(scope="module")
def source_image(model: LoadedModel) -> Image.Image:
    """A generated image to vary."""
    return run_batch(model, [ImageSpec("a red fox", "", 11)], width=64, height=64, steps=2, guidance=5.0,
                     scheduler="euler")[0]


def test_variation_keeps_the_source_size(model: LoadedModel) -> None:
    """A variation of a 96x64 image is 96x64 (img2img takes its size from the image)."""
    source = Image.new("RGB", (96, 64), (200, 40, 40))
    (image,) = run_batch(model, [ImageSpec("a", "", 1)], width=96, height=64, steps=4, guidance=5.0,
                         scheduler="euler", init_images=[source], strength=0.5)
    assert image.size == (96, 64)


def test_variation_is_reproducible(model: LoadedModel, source_image: Image.Image) -> None:
    """The same source, seed and strength give the same pixels."""
    assert np.array_equal(vary(model, source_image, 3, 0.5), vary(model, source_image, 3, 0.5))


def test_variation_seeds_differ(model: LoadedModel, source_image: Image.Image) -> None:
    """Two seeds give two different variations of one source."""
    assert not np.array_equal(vary(model, source_image, 3, 0.5), vary(model, source_image, 4, 0.5))


def test_lower_strength_stays_closer_to_the_source(model: LoadedModel, source_image: Image.Image) -> None:
    """Strength 0.25 changes the source less than strength 1.0 does."""
    src = np.asarray(source_image.convert("RGB")).astype(np.int16)
    near = np.abs(vary(model, source_image, 3, 0.25) - src).mean()
    far = np.abs(vary(model, source_image, 3, 1.0) - src).mean()
    assert near < far


def test_variation_runs_its_share_of_the_steps(model: LoadedModel, source_image: Image.Image) -> None:
    """At strength 0.5 of 4 steps, on_step sees steps 1 and 2 of a total of 2."""
    seen: list[tuple[int, int]] = []
    vary(model, source_image, 3, 0.5, on_step=lambda s, t, lat: seen.append((s, t)))
    assert seen == [(1, 2), (2, 2)]


def test_variation_pipeline_shares_the_modules(model: LoadedModel, source_image: Image.Image) -> None:
    """The image-to-image pipeline reuses the loaded UNet and VAE instead of a second copy."""
    vary(model, source_image, 3, 0.5)
    assert model.img2img.unet is model.pipe.unet and model.img2img.vae is model.pipe.vae


def test_variation_encodes_each_source_once(model: LoadedModel, source_image: Image.Image) -> None:
    """Three images of one source and one of another: one VAE encode call of two images, not four."""
    encoded: list[int] = []
    real = model.pipe.vae.encode
    model.pipe.vae.encode = lambda x, *a, **k: (encoded.append(int(x.shape[0])), real(x, *a, **k))[1]
    other = Image.new("RGB", (64, 64), (30, 120, 200))
    try:
        images = run_batch(model, [ImageSpec("a red fox", "", seed) for seed in (1, 2, 3, 4)], width=64, height=64,
                           steps=4, guidance=5.0, scheduler="euler", init_images=[source_image] * 3 + [other],
                           strength=0.5)
    finally:
        del model.pipe.vae.encode
    assert encoded == [2] and len(images) == 4
    assert len({np.asarray(img).tobytes() for img in images}) == 4  # each seed its own image


def test_variation_is_diffusers_own_image_to_image(model: LoadedModel, source_image: Image.Image) -> None:
    """Encoding once gives the image diffusers' img2img gives for the same source, prompt and seed."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from engine.gpu.model import scheduler_for

    reference = StableDiffusionXLImg2ImgPipeline.from_pipe(model.pipe, dtype=model.choice.dtype)
    reference.scheduler = scheduler_for(model, "euler")
    reference.set_progress_bar_config(disable=True)
    expected = [np.asarray(img).astype(np.int16) for img in reference(
        prompt=["a red fox"] * 2, negative_prompt=[""] * 2, image=[source_image] * 2, strength=0.5,
        num_inference_steps=4, guidance_scale=5.0,
        generator=[torch.Generator("cpu").manual_seed(s) for s in (3, 4)]).images]
    ours = run_batch(model, [ImageSpec("a red fox", "", s) for s in (3, 4)], width=64, height=64, steps=4,
                     guidance=5.0, scheduler="euler", init_images=[source_image] * 2, strength=0.5)
    for mine, theirs in zip(ours, expected):
        assert np.abs(np.asarray(mine).astype(np.int16) - theirs).max() <= 2


def test_latents_preview_is_a_jpeg_per_image() -> None:
    """Latents become one small JPEG per image, upscaled so tiny latents are visible."""
    previews = latents_preview(torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0)))
    assert len(previews) == 2
    with Image.open(io.BytesIO(previews[0])) as img:
        assert img.format == "JPEG" and img.size == (120, 80)


def test_fast_mode_without_lora_is_refused(model: LoadedModel) -> None:
    """A fast call on a model without the LCM-LoRA fails clearly instead of running without it."""
    with pytest.raises(ModelLoadError, match="fast mode is not available"):
        generate(model, 1, fast=True, guidance=1.0)


def test_bad_lora_path_names_it_and_the_fixes(model: LoadedModel, tmp_path: Path) -> None:
    """A LoRA that cannot load names the id and the ways out (download, local dir, empty to disable)."""
    with pytest.raises(ModelLoadError) as info:
        load_fast_lora(model, str(tmp_path / "no-lora"))
    text = str(info.value)
    assert str(tmp_path / "no-lora") in text and "python -m engine download" in text and "FAST_LORA_ID" in text
    assert model.fast_adapter is None


# --- fast mode -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_model(tiny_model_dir: Path, tiny_lora_dir: Path) -> LoadedModel:
    """The tiny model with the tiny LCM-LoRA loaded as a switchable adapter."""
    loaded = load_model(EngineSettings(_env_file=None, model_id=str(tiny_model_dir), device="cpu", sizes="64x64"))
    load_fast_lora(loaded, str(tiny_lora_dir))
    return loaded


@pytest.fixture(scope="module")
def quality_before_fast(fast_model: LoadedModel) -> np.ndarray:
    """The quality-mode image for seed 42, made before any fast call."""
    return generate(fast_model, 42)[0]


def fast_image(model: LoadedModel) -> np.ndarray:
    """The fast-mode image for seed 42 (4 LCM steps, no CFG)."""
    return generate(model, 42, fast=True, steps=4, guidance=1.0)[0]


def test_lora_loads_as_switchable_adapter(fast_model: LoadedModel) -> None:
    """The LCM-LoRA is loaded under the adapter name 'lcm'."""
    assert fast_model.fast_adapter == "lcm"
    assert "lcm" in fast_model.pipe.get_list_adapters().get("unet", [])


def test_fast_mode_differs_from_quality_mode(fast_model: LoadedModel, quality_before_fast: np.ndarray) -> None:
    """For the same seed, fast mode gives a different image than quality mode."""
    assert np.abs(fast_image(fast_model) - quality_before_fast).mean() > 5


def test_fast_mode_applies_the_lora(fast_model: LoadedModel, model: LoadedModel) -> None:
    """The fast image differs from the same LCM sampling without the LoRA, so the adapter is active."""
    with_lora = fast_image(fast_model)
    without_lora = generate(model, 42, scheduler="lcm", steps=4, guidance=1.0)[0]
    assert np.abs(with_lora - without_lora).mean() > 0.5
    assert np.array_equal(with_lora, fast_image(fast_model))


def test_quality_mode_after_fast_mode_is_unchanged(fast_model: LoadedModel,
                                                   quality_before_fast: np.ndarray) -> None:
    """After a fast call the adapter is switched off: quality images are as before."""
    fast_image(fast_model)
    after = generate(fast_model, 42)[0]
    assert np.abs(after - quality_before_fast).max() <= 2


def test_quality_mode_with_lora_loaded_matches_plain_model(fast_model: LoadedModel, model: LoadedModel,
                                                           quality_before_fast: np.ndarray) -> None:
    """Loading the LoRA does not change quality images (it is loaded switched off)."""
    assert np.abs(quality_before_fast - generate(model, 42)[0]).max() <= 2


def test_the_lora_is_switched_only_when_the_mode_changes(fast_model: LoadedModel,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Switching walks every LoRA layer, so quality after quality (or fast after fast) switches nothing."""
    fast_image(fast_model)
    generate(fast_model, 1)  # a known state: quality, LoRA off
    calls: list[str] = []
    for name in ("enable_lora", "disable_lora", "set_adapters"):
        real = getattr(fast_model.pipe, name)
        monkeypatch.setattr(fast_model.pipe, name,
                            lambda *a, _real=real, _name=name, **k: (calls.append(_name), _real(*a, **k))[1])
    generate(fast_model, 1)
    generate(fast_model, 2)
    assert calls == []
    first = fast_image(fast_model)
    assert np.array_equal(fast_image(fast_model), first)
    assert calls == ["enable_lora", "set_adapters"]
    generate(fast_model, 1)
    generate(fast_model, 2)
    assert calls == ["enable_lora", "set_adapters", "disable_lora"]


def test_tiny_lora_is_not_a_no_op(tiny_lora_dir: Path) -> None:
    """The test LoRA has non-zero up weights, so the fast-mode tests above can see it."""
    from safetensors.torch import load_file

    weights = load_file(str(tiny_lora_dir / "pytorch_lora_weights.safetensors"))
    ups = [v for k, v in weights.items() if "lora.up" in k or "lora_B" in k]
    assert ups and all(float(v.abs().max()) > 0 for v in ups)


def test_model_index_lists_sdxl_components(tiny_model_dir: Path) -> None:
    """The tiny model has SSD-1B's components: two text encoders with tokenizers, UNet, VAE, scheduler."""
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert {"text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae", "scheduler"} <= set(index)


def test_fast_variation_runs_its_share_of_the_lcm_steps(fast_model: LoadedModel) -> None:
    """A fast-mode variation (LCM-LoRA, 4 steps, strength 0.5) runs 2 LCM steps and keeps the size."""
    source = Image.new("RGB", (64, 64), (30, 120, 200))
    seen: list[tuple[int, int]] = []
    (image,) = run_batch(fast_model, [ImageSpec("a", "", 1)], width=64, height=64, steps=4, guidance=1.0,
                         scheduler="euler", fast=True, init_images=[source], strength=0.5,
                         on_step=lambda s, t, lat: seen.append((s, t)))
    assert seen == [(1, 2), (2, 2)] and image.size == (64, 64)


# --- half precision (bfloat16 on the CPU stands in for the GPU's fp16) ------------------------------


@pytest.fixture(scope="module")
def bf16_model(tiny_model_dir: Path) -> LoadedModel:
    """The tiny model in bfloat16, as DTYPE=bfloat16 loads it."""
    return load_model(EngineSettings(_env_file=None, model_id=str(tiny_model_dir), device="cpu", sizes="64x64",
                                     dtype="bfloat16"))


def module_dtypes(model: LoadedModel) -> dict[str, torch.dtype]:
    """The dtype of every model module of the pipeline."""
    pipe = model.pipe
    return {name: getattr(pipe, name).dtype for name in ("unet", "vae", "text_encoder", "text_encoder_2")}


def test_variation_keeps_every_module_in_half_precision(bf16_model: LoadedModel) -> None:
    """The first variation must not cast the shared modules to float32 (diffusers' from_pipe default)."""
    source = run_batch(bf16_model, [ImageSpec("a fox", "", 1)], width=64, height=64, steps=2, guidance=5.0,
                       scheduler="euler")[0]
    run_batch(bf16_model, [ImageSpec("a fox", "", 2)], width=64, height=64, steps=4, guidance=5.0,
              scheduler="euler", init_images=[source], strength=0.5)
    assert set(module_dtypes(bf16_model).values()) == {torch.bfloat16}


# --- --tile: circular padding ---------------------------------------------------------------------------


def _unet_out(model: LoadedModel, latents: torch.Tensor) -> torch.Tensor:
    unet = model.pipe.unet
    cfg = unet.config
    batch = latents.shape[0]
    text = torch.zeros(batch, 4, cfg.cross_attention_dim, dtype=latents.dtype)
    pooled = torch.zeros(batch, cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim,
                         dtype=latents.dtype)
    time_ids = torch.tensor([[64, 64, 0, 0, 64, 64]] * batch, dtype=latents.dtype)
    with torch.inference_mode():
        return unet(latents, 500.0, encoder_hidden_states=text,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample


@pytest.mark.parametrize("tiled", [True, False], ids=["tile", "plain"])
def test_tile_makes_the_unet_and_vae_wrap_around(model: LoadedModel, tiled: bool) -> None:
    """With --tile every convolution pads circularly, so the UNet and the VAE decoder commute with a circular shift
    (a picture shifted past its edge comes back on the other side): the image has no edge. With zero padding they do
    not; and the padding is back to zeros after the call."""
    from engine.gpu.pipeline import circular_padding

    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(latents, shifts=(4, 4), dims=(2, 3))  # a multiple of the tiny UNet's stride
    with circular_padding(model, tiled):
        unet_a, unet_b = _unet_out(model, latents), _unet_out(model, shifted)
        with torch.inference_mode():
            pictures = [model.pipe.vae.decode(z / model.pipe.vae.config.scaling_factor).sample
                        for z in (latents, shifted)]
    unet_wraps = torch.allclose(torch.roll(unet_a, (4, 4), (2, 3)), unet_b, atol=1e-4)
    vae_wraps = torch.allclose(torch.roll(pictures[0], (32, 32), (2, 3)), pictures[1], atol=1e-4)
    assert (unet_wraps, vae_wraps) == (tiled, tiled)
    assert {m.padding_mode for m in model.pipe.unet.modules() if isinstance(m, torch.nn.Conv2d)} == {"zeros"}
    assert not model.tiling


def test_a_tile_batch_changes_the_image_and_leaves_the_next_alone(model: LoadedModel) -> None:
    """The same seed with --tile gives another image; a plain batch after it is the plain image again."""
    plain = generate(model, 5)[0]
    tiled = generate(model, 5, tile=True)[0]
    assert np.abs(tiled - plain).mean() > 1
    assert np.array_equal(generate(model, 5)[0], plain)
