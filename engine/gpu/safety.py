"""Image safety: an optional classifier that scores every result, and the one rule that turns a score and a
server's NSFW policy into what happens to each image.

SAFETY_MODEL_ID names a transformers image-classification model (a hub id such as
Falconsai/nsfw_image_detection, or a local directory). It is loaded with transformers' own
``pipeline("image-classification")`` next to the diffusion model, on the same device and in the same
precision, and runs right after each batch on the worker (in-process or remote), so a score is stored
with every image before anyone sees it. An image's score is the probability the model gives to the
labels in SAFETY_LABELS (summed: a model may split NSFW into several classes, e.g. porn, hentai, sexy).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from engine.gpu.generation import BatchResult
from engine.gpu.model import DeviceChoice, ModelLoadError
from engine.jobs.records import Job

log = logging.getLogger(__name__)

ImageAction = Literal["post", "spoiler", "withhold"]


@dataclass(frozen=True)
class SafetyChecker:
    """A loaded classifier and the labels of its that count as NSFW."""

    classify: Any  # a transformers ImageClassificationPipeline
    model_id: str
    unsafe_labels: frozenset[str]  # as the model spells them

    def score(self, images: Sequence[Any]) -> tuple[float, ...]:
        """The NSFW score (0-1) of each PIL image, in order; one classifier call for the whole list."""
        if not images:
            return ()
        outputs = self.classify(list(images), top_k=None, batch_size=len(images))
        return tuple(round(min(1.0, sum(o["score"] for o in out if o["label"] in self.unsafe_labels)), 4)
                     for out in outputs)


def load_checker(model_id: str, labels: Sequence[str], choice: DeviceChoice) -> SafetyChecker:
    """Load SAFETY_MODEL_ID with ``from_pretrained`` (through transformers' pipeline) on ``choice``'s device.

    Raises ModelLoadError naming the variable and what to do: an operator who asked for image safety gets
    no service without it, rather than unchecked images in channels whose policy relies on it.
    """
    from transformers import AutoImageProcessor, pipeline

    try:
        # the PIL image processor: transformers' reference preprocessing, and no torchvision needed
        processor = AutoImageProcessor.from_pretrained(model_id, backend="pil")
        classify = pipeline("image-classification", model=model_id, image_processor=processor,
                            device=choice.device, dtype=choice.dtype)
    except Exception as exc:  # hub unreachable, not a classifier, missing files...
        raise ModelLoadError(
            f"SAFETY_MODEL_ID '{model_id}' could not be loaded ({type(exc).__name__}: {str(exc)[:300]}). Give a "
            f"Hugging Face image-classification model (e.g. Falconsai/nsfw_image_detection) or a local directory "
            f"with one, or leave SAFETY_MODEL_ID empty to run without image safety.") from exc
    model_labels = [str(name) for name in classify.model.config.id2label.values()]
    wanted = {label.casefold() for label in labels}
    unsafe = frozenset(name for name in model_labels if name.casefold() in wanted)
    if not unsafe:
        raise ModelLoadError(
            f"SAFETY_MODEL_ID '{model_id}' has the labels {', '.join(model_labels)}, none of which is in "
            f"SAFETY_LABELS ({', '.join(labels)}); set SAFETY_LABELS to the labels that mean NSFW.")
    log.info("image safety: %s on %s (%s), NSFW labels %s", model_id, choice.device, choice.dtype_name,
             ", ".join(sorted(unsafe)))
    return SafetyChecker(classify, model_id, unsafe)


def scored(result: BatchResult, checker: SafetyChecker | None) -> BatchResult:
    """``result`` with the NSFW score of every image of every job (one classifier call for the batch); as it is
    without a checker."""
    if checker is None or not result.images:
        return result
    ids = list(result.images)
    flat = checker.score([image for job_id in ids for image in result.images[job_id]])
    scores, start = {}, 0
    for job_id in ids:
        count = len(result.images[job_id])
        scores[job_id], start = flat[start:start + count], start + count
    return replace(result, scores=scores)


def policy_summary(policy: str, checking: bool) -> str:
    """What a server's NSFW ``policy`` does, with image safety on (``checking``) or off, in a few words."""
    if policy == "allow":
        return "every image is posted as is"
    if checking:
        verb = "spoilered" if policy == "spoiler" else "withheld"
        return f"outside channels marked NSFW, images the safety check flags are {verb}"
    if policy == "spoiler":
        return "outside channels marked NSFW, every image is spoilered (no safety check to tell which)"
    return "/imagine works only in channels marked NSFW (no safety check to tell which images to withhold)"


def picture_threshold(job: Job) -> float | None:
    """The score from which the member's own picture a job starts from counts as NSFW, or None when it is not
    checked: jobs not made from a member's picture, and those asked for where every image is posted ("allow",
    also any policy in a channel marked NSFW). The policy and threshold are the ones stored with the job."""
    delivery = job.requester.delivery
    if job.params.init_image is None or delivery.get("nsfw", "allow") == "allow":
        return None
    return float(delivery.get("nsfw_threshold", 0.5))


def recorded_policy(job: Job) -> str:
    """The NSFW policy in force where the job was asked for, as its record keeps it (records from before image
    safety said only whether to spoiler every image)."""
    info = job.requester.delivery
    return str(info.get("nsfw") or ("spoiler" if info.get("spoiler") else "allow"))


def recorded_actions(job: Job, default_threshold: float) -> tuple[ImageAction, ...]:
    """What happens to each of the job's images where it was asked for: post, spoiler or withhold (the threshold
    recorded at submit; records from before per-server thresholds use ``default_threshold``, SAFETY_THRESHOLD).
    Every place that shows the job's images to its requester again (the bot's delivery, the gallery) holds them."""
    threshold = float(job.requester.delivery.get("nsfw_threshold", default_threshold))
    return image_actions(recorded_policy(job), job.safety, len(job.results), threshold)


def image_actions(policy: str, scores: Sequence[float], count: int, threshold: float) -> tuple[ImageAction, ...]:
    """What happens to each of a job's ``count`` images where it is posted.

    ``policy`` is the one in force where the job was asked for: "allow" (also any policy in a channel
    marked NSFW), "spoiler" or "block". An image is flagged when its score reaches ``threshold``. A
    job without a score per image was not checked (no classifier): every image counts as flagged, so
    "spoiler" spoilers them all and "block" withholds them all; nothing unchecked slips through.
    """
    if policy == "allow":
        return ("post",) * count
    flagged = [s >= threshold for s in scores] if len(scores) == count else [True] * count
    action: ImageAction = "spoiler" if policy == "spoiler" else "withhold"
    return tuple(action if f else "post" for f in flagged)
