"""CUDA_GRAPHS=auto: a lone image's UNet calls replay CUDA graphs, larger batches run the plain compiled code.

CUDA graphs need a CUDA device, so these tests stand in dynamo's ``eager`` backend for the graph-replaying
compile (``graph_kwargs`` is where the device decides); what they check is the engine's part: which calls go to
which compiled function, when each is served, and that nothing recompiles.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

from engine.engine_settings import AccelerationSettings
from engine.gpu import compile_config, compiling
from engine.gpu.model import LoadedModel
from engine.gpu.pipeline import ImageSpec
from tests.engine.switch_helpers import SPECS, assert_same_image, generate

GRAPHS = dict(fast_lora_id="", dtype="bfloat16", channels_last=True, compile="unet", compile_backend="eager",
              compile_batch_sizes="1,4")
FOUR = [*SPECS, ImageSpec("a blue heron at dawn", "blurry", 44)]


@pytest.fixture
def graphs_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """What graph_kwargs returns on CUDA with inductor, with the eager backend in place of reduce-overhead."""
    def on_cuda(settings: Any, cuda: bool, notes: list[str]) -> dict[str, Any]:
        return {"backend": "eager", "fullgraph": True, "dynamic": False}

    monkeypatch.setattr(compiling, "graph_kwargs", on_cuda)


def _hold_batch(monkeypatch: pytest.MonkeyPatch, batch: int) -> threading.Event:
    release = threading.Event()
    warm = compiling.CompileManager._warm

    def held(self: compiling.CompileManager, profile: compiling.WarmProfile) -> bool:
        if profile.batch == batch:
            release.wait(60)
        return warm(self, profile)

    monkeypatch.setattr(compiling.CompileManager, "_warm", held)
    return release


def test_a_lone_image_replays_graphs_and_a_batch_of_four_runs_the_plain_compiled_code(
        load: Callable[..., LoadedModel], graphs_on_cpu: None) -> None:
    eager = load(**{**GRAPHS, "compile": "off"})
    alone, four = generate(eager, SPECS[:1]), generate(eager, FOUR)
    model = load(**GRAPHS)
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    unet = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")  # a guard miss must raise, not quietly run eagerly

    before = dict(unet.calls)
    assert_same_image(generate(model, SPECS[:1]), alone)
    assert {k: unet.calls[k] - before[k] for k in before} == {"compiled": 2, "eager": 0, "graphs": 2}
    before = dict(unet.calls)
    assert_same_image(generate(model, FOUR), four)
    assert {k: unet.calls[k] - before[k] for k in before} == {"compiled": 2, "eager": 0, "graphs": 0}


def test_the_graphs_are_compiled_apart_from_the_plain_code(load: Callable[..., LoadedModel],
                                                           graphs_on_cpu: None) -> None:
    """Each has its own dynamo cache: the plain code holds both shapes (it serves lone images while the warm-up
    runs), the graphs only the lone image's."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    model = load(**GRAPHS)
    compiler = model.accel.compiler
    assert compiler.wait(60), compiler.describe()
    assert compiler.describe().startswith("compile: ready, 3/3 shape(s) warm")
    unet = model.accel.routers[0]
    graphed, plain = (fn._torchdynamo_orig_callable.__code__ for fn in (unet.graphed, unet.compiled))
    assert graphed is not plain
    assert (len(_debug_get_cache_entry_list(graphed)), len(_debug_get_cache_entry_list(plain))) == (1, 2)


def test_lone_images_run_the_plain_compiled_code_until_the_warm_up_is_over(
        load: Callable[..., LoadedModel], graphs_on_cpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker records its own graphs (graph trees are per thread), not while the warm-up still compiles beside
    it; until then the plain compiled code serves lone images (they ran eagerly for the whole warm-up)."""
    release = _hold_batch(monkeypatch, 4)
    model = load(**GRAPHS)
    compiler, unet = model.accel.compiler, model.accel.routers[0]
    try:
        deadline = time.monotonic() + 60
        while not compiler.warmed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {p.batch for p in compiler.warmed} == {1} and compiler.state == "warming"
        before = dict(unet.calls)
        generate(model, SPECS[:1])
        assert {k: unet.calls[k] - before[k] for k in before} == {"compiled": 2, "eager": 0, "graphs": 0}
    finally:
        release.set()
    assert compiler.wait(60)
    before = dict(unet.calls)
    generate(model, SPECS[:1])
    assert {k: unet.calls[k] - before[k] for k in before} == {"compiled": 2, "eager": 0, "graphs": 2}


def test_a_lone_image_whose_graphs_fail_keeps_the_plain_compiled_code(
        load: Callable[..., LoadedModel], graphs_on_cpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    warm = compiling.CompileManager._warm

    def no_graphs(self: compiling.CompileManager, profile: compiling.WarmProfile) -> bool:
        if profile.graphs:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return warm(self, profile)

    monkeypatch.setattr(compiling.CompileManager, "_warm", no_graphs)
    model = load(**GRAPHS)
    compiler, unet = model.accel.compiler, model.accel.routers[0]
    assert compiler.wait(60), compiler.describe()
    assert "64x64 batch 1 CUDA graphs failed (RuntimeError: CUDA error" in compiler.describe()
    before = dict(unet.calls)
    generate(model, SPECS[:1])
    assert {k: unet.calls[k] - before[k] for k in before} == {"compiled": 2, "eager": 0, "graphs": 0}


def test_only_the_warm_up_thread_compiles_graph_functions_without_capturing(make_settings: Any) -> None:
    """Graphs captured on the warm-up thread would never serve the worker (graph trees are per thread), and each
    capture would hold memory and synchronise the GPU beside the worker's batches."""
    settings = make_settings()
    seen: dict[str, bool] = {}

    def warm_up_thread() -> None:
        compile_config.configure_thread(settings, True, warm_up=True)
        seen["warm-up"] = torch._inductor.config.triton.force_cudagraphs_warmup

    thread = threading.Thread(target=warm_up_thread)
    thread.start()
    thread.join()
    compile_config.configure_thread(settings, True)
    assert seen == {"warm-up": True} and torch._inductor.config.triton.force_cudagraphs_warmup is False


def test_graph_kwargs_make_graphs_only_for_auto_on_cuda_with_inductor() -> None:
    def kwargs(cuda: bool = True, **env: Any) -> dict[str, Any] | None:
        settings = type("S", (), {"accel": AccelerationSettings(_env_file=None, **env)})()
        return compile_config.graph_kwargs(settings, cuda, [])  # type: ignore[arg-type]

    assert kwargs() == {"backend": "inductor", "fullgraph": True, "dynamic": False, "mode": "reduce-overhead"}
    assert kwargs(compile_mode="max-autotune")["mode"] == "max-autotune"  # type: ignore[index]
    assert kwargs(cuda=False) is None
    assert kwargs(compile_backend="aot_eager") is None
    assert kwargs(cuda_graphs=False) is None  # off
    assert kwargs(cuda_graphs=True) is None  # every compiled call replays graphs (compile_kwargs' reduce-overhead)


def test_cuda_graphs_reads_auto_true_and_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_GRAPHS", raising=False)
    assert AccelerationSettings(_env_file=None).cuda_graphs is None
    for text, value in (("auto", None), ("true", True), ("off", False)):
        monkeypatch.setenv("CUDA_GRAPHS", text)
        assert AccelerationSettings(_env_file=None).cuda_graphs is value
