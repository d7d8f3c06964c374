"""Image safety: the classifier loaded through from_pretrained, the scores stored per image, and the per-image rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.engine_settings import SettingsError, load_engine_settings
from engine.gpu.generation import BatchResult
from engine.gpu.model import DeviceChoice, ModelLoadError
from engine.gpu.safety import image_actions, load_checker, policy_summary, scored
from engine.jobs.records import Refused
from engine.requests.params import Defaults
from tests.engine.conftest import EngineFactory
from tests.engine.helpers import params, wait_final, who

CPU32 = DeviceChoice("cpu", "float32")
LABELS = ("nsfw", "porn", "hentai", "sexy")


def noise(count: int, size: int = 64) -> list[Image.Image]:
    """Different random RGB pictures."""
    return [Image.fromarray((np.random.RandomState(i).rand(size, size, 3) * 255).astype("uint8"))
            for i in range(count)]


def test_checker_scores_each_image_between_zero_and_one(tiny_classifier_dir: Callable[..., Path]) -> None:
    """The classifier loads through from_pretrained and gives one score in [0, 1] per image, in order."""
    checker = load_checker(str(tiny_classifier_dir()), LABELS, CPU32)
    scores = checker.score(noise(4))
    assert len(scores) == 4 and all(0.0 <= s <= 1.0 for s in scores)
    assert len(set(scores)) == 4, scores
    assert checker.score(noise(4)[2:3]) == scores[2:3]  # alone or in a batch, the same score


def test_fixed_classifier_gives_its_score(tiny_classifier_dir: Callable[..., Path]) -> None:
    """The score is the probability of the NSFW labels."""
    checker = load_checker(str(tiny_classifier_dir(0.9)), LABELS, CPU32)
    assert checker.score(noise(2)) == (0.9, 0.9)


def test_bfloat16_checker_scores_like_float32(tiny_classifier_dir: Callable[..., Path]) -> None:
    """The half-precision path (bfloat16 on the CPU, as float16 on a GPU) loads and agrees with float32."""
    images = noise(3)
    full = load_checker(str(tiny_classifier_dir()), LABELS, CPU32).score(images)
    half = load_checker(str(tiny_classifier_dir()), LABELS, DeviceChoice("cpu", "bfloat16")).score(images)
    assert half == pytest.approx(full, abs=0.03)


def test_labels_match_whatever_their_case(tiny_classifier_dir: Callable[..., Path]) -> None:
    """SAFETY_LABELS=NSFW finds the model's "nsfw" label."""
    checker = load_checker(str(tiny_classifier_dir(0.9)), ("NSFW",), CPU32)
    assert checker.unsafe_labels == frozenset({"nsfw"})


def test_labels_the_model_lacks_are_refused_with_its_labels(tiny_classifier_dir: Callable[..., Path]) -> None:
    """A label list that matches nothing would score every image 0: refused, naming the model's labels."""
    with pytest.raises(ModelLoadError, match=r"has the labels normal, nsfw, none of which is in SAFETY_LABELS"):
        load_checker(str(tiny_classifier_dir()), ("porn",), CPU32)


def test_missing_model_names_the_variable_and_the_way_out(tmp_path: Path) -> None:
    """A model that cannot be loaded says which variable and what to do."""
    with pytest.raises(ModelLoadError, match=r"SAFETY_MODEL_ID '.*' could not be loaded.*leave SAFETY_MODEL_ID empty"):
        load_checker(str(tmp_path / "no-such-model"), LABELS, CPU32)


def test_scored_splits_one_classifier_call_per_job(tiny_classifier_dir: Callable[..., Path]) -> None:
    """A batch of two jobs gets each job's own scores, in image order."""
    checker = load_checker(str(tiny_classifier_dir()), LABELS, CPU32)
    images = noise(3)
    result = scored(BatchResult({7: images[:2], 8: images[2:]}, 0.1), checker)
    expected = checker.score(images)
    assert result.scores == {7: expected[:2], 8: expected[2:]}
    assert scored(BatchResult({7: images}, 0.1), None).scores == {}


@pytest.mark.parametrize(("policy", "scores", "expected"), [
    ("allow", (0.9, 0.1), ("post", "post")),
    ("spoiler", (0.9, 0.1), ("spoiler", "post")),
    ("block", (0.9, 0.1), ("withhold", "post")),
    ("block", (0.5, 0.49), ("withhold", "post")),  # the threshold itself flags
    ("spoiler", (), ("spoiler", "spoiler")),  # not checked: every image counts as flagged
    ("block", (), ("withhold", "withhold")),
    ("allow", (), ("post", "post")),
])
def test_image_actions(policy: str, scores: tuple[float, ...], expected: tuple[str, ...]) -> None:
    """Each image's fate from the policy in force, its score and the threshold 0.5."""
    assert image_actions(policy, scores, 2, 0.5) == expected


def test_policy_summary_says_what_happens_without_a_classifier() -> None:
    """Without image safety, block keeps /imagine to NSFW channels and spoiler spoilers everything."""
    assert "only in channels marked NSFW" in policy_summary("block", False)
    assert "every image is spoilered" in policy_summary("spoiler", False)
    assert "flags are withheld" in policy_summary("block", True)


def test_safety_threshold_is_every_servers_default(make_settings: Callable[..., Any]) -> None:
    """SAFETY_THRESHOLD is the deployment's NSFW threshold until a server sets its own."""
    assert Defaults.from_settings(make_settings(safety_threshold=0.7)).nsfw_threshold == 0.7


def test_labels_and_threshold_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAFETY_LABELS is a comma list; SAFETY_THRESHOLD a probability."""
    monkeypatch.setenv("SAFETY_LABELS", " porn , hentai ")
    monkeypatch.setenv("SAFETY_THRESHOLD", "0.8")
    settings = load_engine_settings(_env_file=None)
    assert (settings.safety_labels, settings.safety_threshold) == (("porn", "hentai"), 0.8)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SAFETY_THRESHOLD", "0", "SAFETY_THRESHOLD: Input should be greater than 0"),
    ("SAFETY_THRESHOLD", "1.5", "SAFETY_THRESHOLD: Input should be less than or equal to 1"),
    ("SAFETY_LABELS", " , ", "SAFETY_LABELS: is empty; name the classifier labels that mean NSFW"),
])
def test_wrong_safety_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                           message: str) -> None:
    """Each wrong value is refused with the variable's name and what is allowed."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_engine_settings(_env_file=None)


async def test_each_result_is_stored_with_its_score(make_engine: EngineFactory,
                                                    tiny_classifier_dir: Callable[..., Path]) -> None:
    """With SAFETY_MODEL_ID, a job's images are scored on the worker and the scores stored with the job,
    equal to the classifier's score of each saved PNG."""
    eng = await make_engine(safety_model_id=str(tiny_classifier_dir()))
    job = await wait_final(eng, (await eng.submit(params(count=2), who())).job.id)
    assert job.state == "done" and len(job.safety) == 2
    assert eng.metrics.registry.get_sample_value("imagine_safety_score_count") == 2
    assert (eng.status().safety, eng.status().nsfw_threshold) == (str(tiny_classifier_dir()), 0.5)
    checker = load_checker(str(tiny_classifier_dir()), LABELS, CPU32)
    with Image.open(job.results[0]) as first, Image.open(job.results[1]) as second:
        assert checker.score([first.convert("RGB"), second.convert("RGB")]) == pytest.approx(job.safety, abs=1e-3)


async def test_without_a_classifier_jobs_have_no_scores(make_engine: EngineFactory) -> None:
    """No SAFETY_MODEL_ID: nothing is scored (and nothing of it is loaded)."""
    eng = await make_engine()
    job = await wait_final(eng, (await eng.submit(params(), who())).job.id)
    assert job.state == "done" and job.safety == ()
    assert eng.status().model_state == "ready"


async def test_half_precision_engine_scores_results(make_engine: EngineFactory,
                                                    tiny_classifier_dir: Callable[..., Path]) -> None:
    """The whole half-precision path (bfloat16 pipeline and classifier on the CPU) stores scores."""
    eng = await make_engine(dtype="bfloat16", safety_model_id=str(tiny_classifier_dir(0.9)))
    job = await wait_final(eng, (await eng.submit(params(), who())).job.id)
    assert job.state == "done" and job.safety == pytest.approx((0.9,), abs=0.01)


async def test_a_classifier_that_cannot_load_fails_the_model_with_the_reason(make_engine: EngineFactory,
                                                                             tmp_path: Path) -> None:
    """Asked-for image safety that is missing stops generation (no unchecked images), and says why."""
    eng = await make_engine(safety_model_id=str(tmp_path / "missing"))
    assert not await eng.wait_ready(60)
    assert "SAFETY_MODEL_ID" in (eng.model_error or "")
    with pytest.raises(Refused, match="SAFETY_MODEL_ID"):  # users are told generation is unavailable, and why
        await eng.submit(params(), who())
