"""Members' LoRAs (LORAS) on the tiny model, through the service's loader and the real pipeline: loaded once as
adapters, switched per batch, combined with fast mode, in float32 and bfloat16, and a broken one left out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.gpu.model import LoadedModel
from engine.gpu.pipeline import ImageSpec, run_batch
from engine.gpu.tiny_model import save_tiny_lcm_lora


@pytest.fixture(scope="module")
def lora_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny random LoRAs: one as a directory, one as its .safetensors file."""
    first = save_tiny_lcm_lora(tmp_path_factory.mktemp("lora-a"), seed=3)
    second = save_tiny_lcm_lora(tmp_path_factory.mktemp("lora-b"), seed=4)
    return first, second / "pytorch_lora_weights.safetensors"


def _loras(dirs: tuple[Path, Path]) -> str:
    return f"ink={dirs[0]}|ink drawing, moss={dirs[1]}:0.5"


def _image(model: LoadedModel, loras: tuple = (), **call) -> np.ndarray:
    options = {"width": 64, "height": 64, "steps": 2, "guidance": 5.0, "scheduler": "euler", **call}
    [image] = run_batch(model, [ImageSpec("a fox", "", 7)], loras=loras, **options)
    return np.asarray(image, dtype=np.int16)


def test_each_lora_changes_the_image_and_switching_back_restores_it(load: Callable[..., LoadedModel],
                                                                    lora_dirs: tuple[Path, Path]) -> None:
    """ink, moss, both and none give four different images; none after them is the first image again, and a
    second batch with the same LoRAs switches nothing."""
    model = load(loras=_loras(lora_dirs))
    assert model.loras == {"ink": str(lora_dirs[0]), "moss": str(lora_dirs[1])}
    plain = _image(model)
    ink, moss = _image(model, (("ink", 1.0),)), _image(model, (("moss", 0.5),))
    both = _image(model, (("ink", 1.0), ("moss", 0.5)))
    images = [plain, ink, moss, both]
    assert all(np.abs(a - b).mean() > 1 for i, a in enumerate(images) for b in images[i + 1:])
    changes = model.mode_changes
    assert np.array_equal(_image(model, (("moss", 0.5),)), moss) and model.mode_changes == changes + 1
    _image(model, (("moss", 0.5),))
    assert model.mode_changes == changes + 1  # the same set: nothing switched
    assert np.array_equal(_image(model), plain) and not model.lora_on


def test_a_lora_with_fast_mode_on_the_fused_fast_unet(load: Callable[..., LoadedModel],
                                                      lora_dirs: tuple[Path, Path]) -> None:
    """With FAST_FUSED_UNET the LCM-LoRA stays on the quality UNet when LoRAs are offered: a fast batch with a LoRA
    runs both adapters there (not the fused copy), one without runs the fused copy as before; FUSE_QKV leaves the
    UNet alone (it would drop the LoRAs)."""
    model = load(loras=_loras(lora_dirs), fast_fused_unet=True, fuse_qkv=True)
    fast = {"steps": 2, "guidance": 1.0, "fast": True}
    plain_fast = _image(model, **fast)
    assert not model.lora_on
    with_lora = _image(model, (("ink", 1.0),), **fast)
    assert model.adapters_on == (("lora-ink", 1.0), ("lcm", 1.0))
    assert np.abs(with_lora - plain_fast).mean() > 1
    assert any("FUSE_QKV: UNet skipped, the LoRAs of LORAS" in line for line in model.accel.lines)


def test_a_lora_that_does_not_load_is_left_out(load: Callable[..., LoadedModel], lora_dirs: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    """A missing file: the model and the other LoRA load, the status says which failed, and a batch naming it
    fails saying so."""
    from engine.gpu.model import ModelLoadError

    model = load(loras=f"ink={lora_dirs[0]}, gone={tmp_path / 'gone.safetensors'}")
    assert list(model.loras) == ["ink"]
    assert any(line.startswith("LORAS: 'gone' could not be loaded") for line in model.notes)
    with pytest.raises(ModelLoadError, match="The LoRA 'gone' is not loaded on this GPU"):
        _image(model, (("gone", 1.0),))


def test_a_lora_in_bfloat16(load: Callable[..., LoadedModel], lora_dirs: tuple[Path, Path]) -> None:
    """The half-precision path: LoRA adapters on a bfloat16 UNet change the image and keep every module bf16."""
    import torch

    model = load(loras=_loras(lora_dirs), dtype="bfloat16")
    assert np.abs(_image(model, (("ink", 1.0),)) - _image(model)).mean() > 1
    assert {p.dtype for p in model.pipe.unet.parameters()} == {torch.bfloat16}
