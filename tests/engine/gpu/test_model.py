"""Loading the model: local directories, the hub offline, broken directories, devices and dtypes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from engine.engine_settings import EngineSettings
from engine.gpu.model import LoadedModel, ModelLoadError, choose_device, load_model

HAS_ACCELERATOR = torch.cuda.is_available() or (
    getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> LoadedModel:
    """The tiny model loaded once for this module."""
    return load_model(EngineSettings(_env_file=None, model_id=str(tiny_model_dir), device="cpu", sizes="64x64"))


def copy_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model directory to break."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def test_loads_local_directory_with_from_pretrained(model: LoadedModel, tiny_model_dir: Path) -> None:
    """A local diffusers directory loads as an SDXL pipeline in float32 on the CPU."""
    from diffusers import StableDiffusionXLPipeline

    assert isinstance(model.pipe, StableDiffusionXLPipeline)
    assert (model.choice.device, model.choice.dtype_name) == ("cpu", "float32")
    assert model.pipe.unet.dtype == torch.float32 and model.model_id == str(tiny_model_dir)
    assert model.fast_adapter is None


@pytest.mark.skipif(HAS_ACCELERATOR, reason="DEVICE=auto picks the accelerator on this machine")
def test_auto_device_picks_cpu_float32_without_accelerator() -> None:
    """DEVICE=auto with no CUDA or MPS resolves to the CPU in float32."""
    choice = choose_device("auto")
    assert (choice.device, choice.dtype_name, choice.dtype) == ("cpu", "float32", torch.float32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_device_picks_cuda_bfloat16_with_cuda() -> None:
    """DEVICE=auto on a CUDA machine resolves to cuda in bfloat16."""
    assert (choose_device("auto").device, choose_device("auto").dtype_name) == ("cuda", "bfloat16")


def test_auto_dtype_is_bfloat16_on_cuda_so_the_vae_needs_no_upcast(monkeypatch: pytest.MonkeyPatch) -> None:
    """DTYPE=auto: bfloat16 on CUDA (float32's range: no fp32 VAE upcast), float16 on MPS, float32 on CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto").dtype_name == "bfloat16"
    assert choose_device("cuda:1").dtype_name == "bfloat16"
    assert choose_device("cuda", "float16").dtype_name == "float16"
    assert choose_device("cpu").dtype_name == "float32"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert choose_device("mps").dtype_name == "float16"


def test_explicit_dtype_is_kept() -> None:
    """DTYPE other than auto is used as given."""
    assert choose_device("cpu", "bfloat16").dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_requested_without_cuda_says_what_to_set(device: str) -> None:
    """DEVICE=cuda on a machine without CUDA fails with the setting to use instead."""
    with pytest.raises(ModelLoadError, match=f"DEVICE={device} but CUDA is not available here; set DEVICE=auto"):
        choose_device(device)


def test_hub_id_offline_without_cache_names_model_and_fix() -> None:
    """A hub id that is not cached, with the Hub unreachable, names the model, the download command and the
    local-directory alternative."""
    with pytest.raises(ModelLoadError) as info:
        load_model(EngineSettings(_env_file=None, model_id="nobody-here/no-such-model-xyz", device="cpu"))
    text = str(info.value)
    assert "'nobody-here/no-such-model-xyz'" in text
    assert "`python -m engine download`" in text and "local directory" in text


def test_missing_directory_is_reported(tmp_path: Path) -> None:
    """A MODEL_ID path that does not exist says so and what to point it at."""
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError) as info:
        load_model(EngineSettings(_env_file=None, model_id=str(missing), device="cpu"))
    assert f"MODEL_ID directory '{missing}' does not exist" in str(info.value)
    assert "model_index.json" in str(info.value)


def test_directory_without_model_index_is_reported(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A directory without model_index.json is not taken for a diffusers model."""
    broken = copy_model(tiny_model_dir, tmp_path)
    (broken / "model_index.json").unlink()
    with pytest.raises(ModelLoadError, match="has no model_index.json, so it is not a diffusers model directory"):
        load_model(EngineSettings(_env_file=None, model_id=str(broken), device="cpu"))


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder_2"])
def test_directory_missing_a_component_names_it(tiny_model_dir: Path, tmp_path: Path, component: str) -> None:
    """A model directory with a deleted component fails naming the directory and the missing component."""
    broken = copy_model(tiny_model_dir, tmp_path)
    shutil.rmtree(broken / component)
    with pytest.raises(ModelLoadError) as info:
        load_model(EngineSettings(_env_file=None, model_id=str(broken), device="cpu"))
    assert str(broken) in str(info.value) and component in str(info.value)


def test_directory_missing_weights_names_the_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A component without its weights fails naming the missing file and asking for a complete directory."""
    broken = copy_model(tiny_model_dir, tmp_path)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as info:
        load_model(EngineSettings(_env_file=None, model_id=str(broken), device="cpu"))
    assert "diffusion_pytorch_model.safetensors" in str(info.value) and "complete" in str(info.value)


def test_a_vae_id_that_cannot_be_loaded_falls_back_to_the_models_vae(tiny_model_dir: Path, tmp_path: Path) -> None:
    """VAE_ID unreachable: the model's own VAE is used and the status lines say why and what to do."""
    model = load_model(EngineSettings(_env_file=None, model_id=str(tiny_model_dir), device="cpu",
                                      vae_id=str(tmp_path / "no-vae")))
    assert model.pipe.vae is not None
    (note,) = model.notes
    assert note.startswith(f"VAE_ID: could not load '{tmp_path / 'no-vae'}'") and "model's own VAE" in note
    assert "python -m engine download" in note


def test_a_vae_id_that_cannot_be_loaded_without_a_vae_of_its_own_fails_clearly(tiny_model_dir: Path,
                                                                              tmp_path: Path) -> None:
    broken = copy_model(tiny_model_dir, tmp_path)
    shutil.rmtree(broken / "vae")
    with pytest.raises(ModelLoadError, match="could not load VAE_ID .* has no VAE of its own"):
        load_model(EngineSettings(_env_file=None, model_id=str(broken), device="cpu", vae_id=str(tmp_path / "x")))


def test_the_fp16_variant_is_used_for_bfloat16_too(tiny_model_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """bfloat16 loads the fp16 files (half the download of fp32) and casts them on load."""
    from diffusers import StableDiffusionXLPipeline

    seen: dict[str, object] = {}

    def spy(source: str, **kwargs: object) -> object:
        seen.update(kwargs)
        raise OSError("stop here: only the arguments matter")

    monkeypatch.setattr(StableDiffusionXLPipeline, "from_pretrained", spy)
    copy = copy_model(tiny_model_dir, tmp_path)
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_name("diffusion_pytorch_model.fp16.safetensors"))
    with pytest.raises(ModelLoadError):
        load_model(EngineSettings(_env_file=None, model_id=str(copy), device="cpu", dtype="bfloat16"))
    assert (seen["variant"], seen["dtype"]) == ("fp16", torch.bfloat16)
