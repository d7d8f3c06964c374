"""The LoRA slot on a compiled UNet (engine/gpu/lora/slot.py), on the tiny model in bfloat16 with the CUDA switches
forced on (CHANNELS_LAST, COMPILE with dynamo's eager backend, which traces and guards like inductor): LoRA batches
run the compiled graphs after the warm-up, switching LoRA sets never recompiles (dynamo fails on any recompile), and
each image is the one the LoRAs give as plain adapters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.gpu.lora.slot import SLOT
from engine.gpu.model import LoadedModel
from engine.gpu.pipeline import ImageSpec, run_batch
from tests.engine.switch_helpers import assert_same_image, save_random_lora

SWITCHES = dict(dtype="bfloat16", channels_last=True, compile="unet", compile_backend="eager",
                compile_batch_sizes="1", fast_lora_id="")


@pytest.fixture(scope="module")
def lora_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two LoRAs that change the tiny model's images clearly (rank 4 each)."""
    return (save_random_lora(tmp_path_factory.mktemp("slot-a"), seed=5),
            save_random_lora(tmp_path_factory.mktemp("slot-b"), seed=6))


def _loras(dirs: tuple[Path, Path], first: str = "ink") -> str:
    return f"{first}={dirs[0]}, moss={dirs[1]}"


def _image(model: LoadedModel, loras: tuple = ()) -> np.ndarray:
    [image] = run_batch(model, [ImageSpec("a fox", "", 7)], width=64, height=64, steps=2, guidance=5.0,
                        scheduler="euler", loras=loras)
    return np.asarray(image, dtype=np.int16)


def _eager_images(load: Callable[..., LoadedModel], dirs: tuple[Path, Path], **switches) -> dict[str, np.ndarray]:
    model = load(**{**SWITCHES, **switches, "compile": "off"}, loras=_loras(dirs))
    assert model.lora_slot is None
    return {name: _image(model, loras) for name, loras in SETS}


SETS = [("ink", (("ink", 1.0),)), ("moss", (("moss", 0.5),)), ("both", (("ink", 1.0), ("moss", 0.5))), ("plain", ())]


def _nearest(image: np.ndarray, expected: dict[str, np.ndarray]) -> str:
    return min(expected, key=lambda name: float(np.abs(image - expected[name]).mean()))


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_lora_batches_run_compiled_and_switching_never_recompiles(load: Callable[..., LoadedModel],
                                                                  lora_dirs: tuple[Path, Path], dtype: str) -> None:
    """After the warm-up, ink, moss at 0.5, both and none again each run every UNet call compiled, with dynamo set
    to fail on a recompile. In float32 each is the image its adapters give eagerly; in bfloat16 two LoRAs summed in
    one matmul round differently from two added one after the other (on this tiny random model that moves pixels
    more than a real one would), so there each is nearest to its own eager image."""
    expected = _eager_images(load, lora_dirs, dtype=dtype)
    model = load(**{**SWITCHES, "dtype": dtype}, loras=_loras(lora_dirs))
    compiler = model.accel.compiler
    assert model.lora_slot is not None
    assert compiler.wait(60), compiler.describe()
    assert compiler.describe().startswith("compile: ready, 2/2 shape(s) warm"), compiler.describe()
    assert not model.lora_slot.on  # the warm-up's pin is gone: plain batches run without the slot
    unet = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")
    for name, loras in SETS:
        before = dict(unet.calls)
        image = _image(model, loras)
        assert (unet.calls["compiled"] - before["compiled"], unet.calls["eager"] - before["eager"]) == (2, 0), name
        if dtype == "float32":
            assert_same_image(image, expected[name])
        else:
            assert _nearest(image, expected) == name
    assert unet.adapter_state() == () and not model.lora_on


def test_a_set_with_more_rank_than_the_slot_runs_eagerly(load: Callable[..., LoadedModel],
                                                         lora_dirs: tuple[Path, Path]) -> None:
    """LORA_SLOT_RANK=4 holds one of the rank-4 LoRAs, not both: the pair runs its own adapters eagerly (the right
    image still), and the next single LoRA is compiled again."""
    expected = _eager_images(load, lora_dirs)
    model = load(**SWITCHES, loras=_loras(lora_dirs), lora_slot_rank=4)
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    unet = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")
    before = dict(unet.calls)
    assert_same_image(_image(model, (("ink", 1.0), ("moss", 0.5))), expected["both"])
    assert (unet.calls["compiled"] - before["compiled"], unet.calls["eager"] - before["eager"]) == (0, 2)
    assert_same_image(_image(model, (("ink", 1.0),)), expected["ink"])
    assert unet.calls["compiled"] - before["compiled"] == 2


def test_a_plain_batch_while_the_warm_up_pins_the_slot_is_the_plain_image(load: Callable[..., LoadedModel],
                                                                          lora_dirs: tuple[Path, Path]) -> None:
    """The warm-up traces the slot while the worker serves: a plain batch then runs the slot zeroed (the plain
    image), a LoRA batch fills it, and the slot goes off with the last pin only when no LoRA is in it."""
    model = load(**SWITCHES, loras=_loras(lora_dirs))
    assert model.accel.compiler.wait(60)
    slot = model.lora_slot
    ink, plain = _image(model, (("ink", 1.0),)), _image(model)  # the slot off, ink's weights left in it
    with slot.pinned():
        assert slot.on and slot.filled == ()
        assert_same_image(_image(model), plain)
        assert slot.on and model.accel.routers[0].adapter_state() == (SLOT,)
        assert_same_image(_image(model, (("ink", 1.0),)), ink)
        with slot.pinned():
            pass
        assert slot.on  # a pin is still held
    assert slot.on and slot.filled == (("lora-ink", 1.0),)  # a LoRA is in it: the worker turns it off itself
    assert_same_image(_image(model), plain)
    assert not slot.on
    with slot.pinned():
        pass
    assert not slot.on and model.accel.routers[0].adapter_state() == ()


def test_fast_mode_without_a_fused_unet_runs_compiled_through_the_slot(load: Callable[..., LoadedModel]) -> None:
    """Without FAST_FUSED_UNET the LCM-LoRA sits on the compiled UNet: a fast batch of two images (its UNet input
    is the guided batch of one's) runs the slot's compiled graph, and gives the image the eager adapter gives."""
    from tests.engine.switch_helpers import SPECS, generate

    switches = {k: v for k, v in SWITCHES.items() if k != "fast_lora_id"}  # the tiny LCM-LoRA: fast mode on
    eager = load(**{**switches, "compile": "off"}, fast_fused_unet=False)
    expected = generate(eager, SPECS[:2], fast=True, guidance=1.0)
    model = load(**switches, fast_fused_unet=False)
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    unet = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")
    before = dict(unet.calls)
    images = generate(model, SPECS[:2], fast=True, guidance=1.0)
    assert (unet.calls["compiled"] - before["compiled"], unet.calls["eager"] - before["eager"]) == (2, 0)
    assert_same_image(images, expected)


def test_a_lora_batch_is_padded_to_a_warm_slot_size_when_it_pays(load: Callable[..., LoadedModel],
                                                                 lora_dirs: tuple[Path, Path]) -> None:
    """The slot's shapes count for padding like the plain ones, up to batch 2 (LORA_MAX_BATCH): with compiled code
    assumed 2.5x faster, with batch sizes 2 and 4 compiled, one image with a LoRA runs as a compiled batch of 2, and 3
    run as 3 (a plain batch of 3 runs as 4); a set the slot cannot hold runs eagerly, so the worker does not pad
    it."""
    from engine.gpu.acceleration import padded_batch_size
    from engine.gpu.lora.switch import in_slot, wanted

    model = load(**{**SWITCHES, "compile_batch_sizes": "2,4"}, loras=_loras(lora_dirs), lora_slot_rank=4)
    assert model.accel.compiler.wait(120)
    assert model.accel.compiler.describe().startswith("compile: ready, 3/3 shape(s) warm")
    model.accel.compiler.speedup = {1: 2.5}
    size = {"width": 64, "height": 64, "guidance": 5.0, "fast": False}
    assert padded_batch_size(model, 1, **size, lora=True) == 2
    assert (padded_batch_size(model, 3, **size, lora=True), padded_batch_size(model, 3, **size)) == (3, 4)
    assert in_slot(model, wanted(model, False, (("ink", 1.0),)))
    assert not in_slot(model, wanted(model, False, (("ink", 1.0), ("moss", 0.5))))


def test_a_lora_batch_at_a_shape_without_slot_graphs_runs_its_own_adapters(load: Callable[..., LoadedModel],
                                                                           lora_dirs: tuple[Path, Path]) -> None:
    """96x64 was not compiled: a LoRA batch there runs ink's own rank-4 adapter eagerly, not the rank-128 slot,
    whose matmuls would cost more than they save there."""
    from engine.gpu.pipeline import ImageSpec, run_batch

    model = load(**SWITCHES, loras=_loras(lora_dirs))
    assert model.accel.compiler.wait(60)
    run_batch(model, [ImageSpec("a fox", "", 7)], width=96, height=64, steps=2, guidance=5.0, scheduler="euler",
              loras=(("ink", 1.0),))
    assert not model.lora_slot.on and model.accel.routers[0].adapter_state() == ("lora-ink",)
    _image(model, (("ink", 1.0),))  # 64x64 again: the slot
    assert model.lora_slot.on and model.accel.routers[0].adapter_state() == (SLOT,)


def test_removing_a_lora_keeps_the_others_compiled(load: Callable[..., LoadedModel],
                                                   lora_dirs: tuple[Path, Path]) -> None:
    """Deleting an adapter would change the layers the compiled graphs guard on: with the slot a removed LoRA is only
    forgotten (until the model loads again), and the next LoRA batch still runs compiled, without a recompile."""
    from engine.gpu.model import drop_loras

    model = load(**SWITCHES, loras=_loras(lora_dirs))
    assert model.accel.compiler.wait(60)
    unet = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")
    _image(model, (("ink", 1.0),))
    drop_loras(model, ["ink"])
    assert list(model.loras) == ["moss"]
    before = dict(unet.calls)
    _image(model, (("moss", 0.5),))
    assert (unet.calls["compiled"] - before["compiled"], unet.calls["eager"] - before["eager"]) == (2, 0)


def test_a_lora_named_slot_does_not_take_the_slots_place(load: Callable[..., LoadedModel],
                                                         lora_dirs: tuple[Path, Path]) -> None:
    """A member's LoRA may be called anything, "slot" too: its adapter never has the slot's name, so the slot is
    built and the model compiled."""
    model = load(**SWITCHES, loras=_loras(lora_dirs, first="slot"))
    assert model.lora_slot is not None and model.accel.compiler.wait(60), model.accel.compiler.describe()
    _image(model, (("slot", 1.0),))
    assert model.accel.routers[0].adapter_state() == (SLOT,)
