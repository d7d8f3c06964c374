"""Counting prompt tokens never disturbs the pipeline's own tokenizers (they keep state per call)."""

from __future__ import annotations

import threading

from engine.service import Engine

LONG = "a very detailed painting of a fox " * 20


async def test_prompt_notes_use_a_private_tokenizer(engine: Engine) -> None:
    """The counter owns a copy: the pipeline's tokenizer object is never called from another thread."""
    counter = engine.prompt_length
    assert counter is not None and engine.model is not None
    assert counter._tokenizer is not engine.model.pipe.tokenizer
    assert counter.limit == engine.model.pipe.tokenizer.model_max_length


async def test_counting_while_the_pipeline_encodes_fails_no_encode(engine: Engine) -> None:
    """Notes counted on other threads while the pipeline encodes a padded batch: every encode works.

    With one shared fast tokenizer the unpadded counting call reset the padding state under the
    pipeline's call ("Sizes of tensors must match ... Expected size 12 but got size 77").
    """
    assert engine.model is not None and engine.prompt_length is not None
    pipe, counter = engine.model.pipe, engine.prompt_length
    stop = threading.Event()
    errors: list[BaseException] = []

    def count() -> None:
        while not stop.is_set():
            counter.note("a fox")
            counter.note(LONG)

    threads = [threading.Thread(target=count) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(30):
            try:
                pipe.encode_prompt(["a fox", LONG], device="cpu", num_images_per_prompt=1,
                                   do_classifier_free_guidance=True, negative_prompt=["", "blurry"])
            except Exception as exc:  # noqa: PERF203 - collect every failure
                errors.append(exc)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
