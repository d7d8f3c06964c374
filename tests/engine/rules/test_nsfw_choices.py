"""Models and LoRAs the operator marks NSFW (``name[nsfw]`` in MODELS or LORAS) are used only in channels marked NSFW:
the one admission path refuses them elsewhere, and /show holds the same rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.gpu.tiny_model import save_tiny_lcm_lora
from engine.jobs.records import JobRequest, Place, Refused
from engine.requests.params import ParamRequest
from tests.engine.helpers import wait_final, who


@pytest.fixture
async def marked_engine(make_engine, tiny_model_dir: Path, tmp_path: Path):
    """An engine offering "base" and "spicy[nsfw]" (the same tiny model), and the LoRAs "ink" and "lewd[nsfw]"."""
    ink = save_tiny_lcm_lora(tmp_path / "ink", seed=3)
    engine = await make_engine(models=f"base={tiny_model_dir}, spicy[nsfw]={tiny_model_dir}",
                               loras=f"ink={ink}, lewd[nsfw]={ink}")
    assert await engine.wait_ready(60)
    return engine


@pytest.mark.parametrize("choice", [{"model": "spicy"}, {"loras": "ink lewd"}])
async def test_an_nsfw_choice_is_refused_outside_nsfw_channels(marked_engine, choice: dict) -> None:
    """Outside a channel marked NSFW the request is refused, naming what is marked and where it works."""
    params = marked_engine.resolve(ParamRequest(prompt="a fox", **choice))
    with pytest.raises(Refused, match="marked NSFW by the bot's operator, so (it is|they are) used only in channels"):
        await marked_engine.request(JobRequest(params, who(), Place(channel_nsfw=False)))
    assert await marked_engine.get_job(1) is None


async def test_an_nsfw_choice_runs_in_an_nsfw_channel(marked_engine) -> None:
    """In a channel marked NSFW the same request runs; posting it again elsewhere (/show) is refused."""
    params = marked_engine.resolve(ParamRequest(prompt="a fox", model="spicy", loras="lewd", steps=2))
    submission = await marked_engine.request(JobRequest(params, who(), Place(channel_nsfw=True)))
    assert (await wait_final(marked_engine, submission.job.id)).state == "done"
    with pytest.raises(Refused, match="spicy, lewd are marked NSFW"):
        marked_engine.admission.may_show(JobRequest(params, who(), Place(channel_nsfw=False)))
