"""Members' words into English (TRANSLATE_MODEL_ID): a tiny translation model of its own, built offline and loaded
through transformers' Auto classes like a real one, on the one admission path every request takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.gpu.tiny_model import save_tiny_translator
from engine.jobs.records import Refused, Requester
from engine.requests.params import ParamRequest
from engine.requests.translation import NOT_SET_UP, PromptTranslator
from tests.engine.helpers import wait_final

ENGLISH = {"a", "fox", "in", "the", "snow", "red", "cat", "on", "roof"}


@pytest.fixture(scope="module")
def translator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny translation model: German words in, English words out."""
    return save_tiny_translator(tmp_path_factory.mktemp("tiny-translator"))


async def test_asked_for_the_model_gets_english_and_the_member_is_told(make_engine, translator_dir: Path) -> None:
    """--translate: the job's prompt is the model's English, the member's words stay theirs (Edit, Info), the note
    says what the model got, and the image is made."""
    engine = await make_engine(translate_model_id=str(translator_dir))
    reference = PromptTranslator(str(translator_dir))
    reference.load()
    english = reference.english("ein fuchs im schnee")
    submission = await engine.submit(engine.resolve(ParamRequest(prompt="ein fuchs im schnee", translate=True)),
                                     Requester(user_id="u1"))
    p = submission.job.params
    assert p.prompt == english and set(english.split()) <= ENGLISH and p.typed_prompt == "ein fuchs im schnee"
    assert str(submission.notes[0]) == f"Translated for the model: \u201c{english}\u201d"
    assert (await wait_final(engine, submission.job.id)).state == "done"


async def test_not_asked_nothing_is_translated(make_engine, translator_dir: Path) -> None:
    """Without --translate the words go as typed, with no note."""
    engine = await make_engine(translate_model_id=str(translator_dir))
    submission = await engine.submit(engine.resolve(ParamRequest(prompt="ein fuchs im schnee")), Requester("u1"))
    assert submission.job.params.prompt == "ein fuchs im schnee" and submission.notes == ()


async def test_without_a_model_the_member_is_told_and_the_job_runs(make_engine) -> None:
    """No TRANSLATE_MODEL_ID: the job goes as typed, and the note says why."""
    engine = await make_engine()
    submission = await engine.submit(engine.resolve(ParamRequest(prompt="ein fuchs", translate=True)),
                                     Requester("u1"))
    assert submission.job.params.prompt == "ein fuchs" and submission.notes[0] == NOT_SET_UP


async def test_a_model_that_does_not_load_is_said(make_engine, tmp_path: Path) -> None:
    """A TRANSLATE_MODEL_ID that does not load: the service runs, the job goes as typed, the note names it."""
    engine = await make_engine(translate_model_id=str(tmp_path / "nowhere"))
    submission = await engine.submit(engine.resolve(ParamRequest(prompt="ein fuchs", translate=True)),
                                     Requester("u1"))
    assert submission.job.params.prompt == "ein fuchs"
    assert "were not translated (the translation model" in str(submission.notes[0])


async def test_a_variation_keeps_the_translation(make_engine, translator_dir: Path) -> None:
    """V of a translated job: the model gets the same English, without translating again."""
    engine = await make_engine(translate_model_id=str(translator_dir))
    first = await engine.submit(engine.resolve(ParamRequest(prompt="rote katze", translate=True)), Requester("u1"))
    await wait_final(engine, first.job.id)
    varied = await engine.submit(await engine.variation(first.job.id, 0), Requester("u1"))
    assert varied.job.params.prompt == first.job.params.prompt and varied.notes == ()


async def test_the_blocklist_reads_the_members_own_words(make_engine, translator_dir: Path) -> None:
    """A word blocked in the member's language is refused although the model would get the translation."""
    engine = await make_engine(translate_model_id=str(translator_dir), blocklist="fuchs")
    with pytest.raises(Refused, match="blocked words \\(fuchs\\)"):
        await engine.submit(engine.resolve(ParamRequest(prompt="ein fuchs im schnee", translate=True)),
                            Requester("u1"))


async def test_the_translate_preference_fills_a_request(make_engine) -> None:
    """/prefer set translate: True makes a request that says nothing about it translated."""
    engine = await make_engine()
    await engine.preferences.set("u1", {"translate": True})
    params, _notes = await engine.resolve_for(ParamRequest(prompt="ein fuchs"), None, "u1")
    assert params.translate is True


async def test_a_styled_request_wraps_the_english_in_its_template(make_engine, translator_dir: Path) -> None:
    """With a style, the English goes where the member's words went ({prompt}), not a text replacement that could
    hit the template's own words."""
    from engine.requests.styles import make_style

    engine = await make_engine(translate_model_id=str(translator_dir))
    await engine.styles.save(make_style("loud", "ein fuchs photo: {prompt}", limits=engine.policy.limits))
    reference = PromptTranslator(str(translator_dir))
    reference.load()
    english = reference.english("ein fuchs")
    submission = await engine.submit(engine.resolve(ParamRequest(prompt="ein fuchs", style="loud", translate=True)),
                                     Requester("u1"))
    assert submission.job.params.prompt == f"ein fuchs photo: {english}"  # the template's own words stay
    assert submission.job.params.translated and submission.job.params.typed_prompt == "ein fuchs"
