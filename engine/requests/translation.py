"""Members' words in another language, put into English for the model when they ask (``--translate``,
``/imagine translate:``, ``/prefer set translate:``): SSD-1B's text encoders were trained on English captions.

TRANSLATE_MODEL_ID names a sequence-to-sequence translation model into English, as a hub id or a local directory
(for many languages at once: ``Helsinki-NLP/opus-mt-mul-en``, about 300 MB), read through transformers' Auto
classes and run on the CPU, beside the GPU's work. It loads in the background at start; each translation runs off
the event loop, one at a time, and recent ones are remembered. The member is shown what the model was given, and
keeps their own words in Edit and Info.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from engine.jobs.records import JobRequest
from engine.ops.loading import LOADING
from engine.requests.checks import Note, ParamError, Phrase, clean_prompt, phrase_of
from engine.requests.loras import LoraEntry, with_triggers
from engine.requests.params import Style

log = logging.getLogger(__name__)

MAX_CACHED = 1024  # recent translations remembered (a reroll or an edit of the same words costs nothing)
MAX_INPUT_TOKENS = 256
MAX_NEW_TOKENS = 200
WAIT_S = 2.0  # what a request waits for its translation before going on without it (Discord wants an answer in 3 s)
MAX_WAITING = 8  # translations queued at once; more go on untranslated at once (the CPU is not a queue to fill)
NOT_SET_UP = ("This bot has no translation model (the operator sets TRANSLATE_MODEL_ID), so your words went to the "
              "model as you typed them; it reads English best.")


class TranslationError(Exception):
    """The model could not translate (not loaded, or it failed); the message says why."""


class PromptTranslator:
    """One translation model and the translations it made recently."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.error: str | None = None  # why it did not load
        self._tokenizer: Any = None
        self._model: Any = None
        self._lock = threading.Lock()  # one generate() at a time; also guards the cache
        self._loaded = threading.Event()
        self._cache: OrderedDict[str, str] = OrderedDict()
        # a thread of its own: a slow translation never holds the threads the store and the ledger run on
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="translate")
        self._waiting = 0  # requests waiting for a translation (counted on the event loop)

    def load(self) -> None:
        """Read the model (blocking; call off the event loop). A failure is kept in ``error``, not raised."""
        try:
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            with LOADING:  # not while the image model loads on another thread (engine/ops/loading.py)
                tokenizer = AutoTokenizer.from_pretrained(self.model_id)
                model = AutoModelForSeq2SeqLM.from_pretrained(self.model_id)
            model.eval()
            self._tokenizer, self._model = tokenizer, model
            log.info("prompt translation ready (%s)", self.model_id)
        except Exception as exc:  # the service runs on without it; requests asking for it are told
            self.error = f"the translation model {self.model_id} could not be loaded ({type(exc).__name__})"
            log.warning("prompt translation is off: %s: %s", self.error, exc)
        finally:
            self._loaded.set()

    async def english_soon(self, text: str) -> str:
        """``english`` off the event loop, within WAIT_S; TranslationError when it cannot be had in time (the
        translation still finishes and is remembered for the next request)."""
        if self._waiting >= MAX_WAITING:
            raise TranslationError("too many translations are waiting")
        self._waiting += 1
        try:
            future = self._thread.submit(self.english, text, WAIT_S)
            return await asyncio.wait_for(asyncio.wrap_future(future), WAIT_S)
        except TimeoutError:
            raise TranslationError("it took too long") from None
        finally:
            self._waiting -= 1

    def english(self, text: str, timeout: float | None = None) -> str:
        """``text`` in English (blocking). TranslationError when the model is missing, still loading past
        ``timeout`` seconds, or fails."""
        if not self._loaded.wait(timeout):
            raise TranslationError("the translation model is still loading")
        if self._model is None:
            raise TranslationError(self.error or "no translation model is loaded")
        import torch

        with self._lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return self._cache[text]
            try:
                inputs = self._tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_INPUT_TOKENS)
                # a translation is about as long as its source: a model that does not stop is cut there
                longest = min(MAX_NEW_TOKENS, 2 * int(inputs["input_ids"].shape[1]) + 8)
                with torch.inference_mode():
                    out = self._model.generate(**inputs, max_new_tokens=longest, num_beams=1, do_sample=False)
                english = " ".join(self._tokenizer.decode(out[0], skip_special_tokens=True).split())
            except Exception as exc:
                log.warning("translating a prompt failed: %s", exc)
                raise TranslationError(f"the translation failed ({type(exc).__name__})") from exc
            self._cache[text] = english
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
            return english


async def translate_request(translator: PromptTranslator | None, req: JobRequest, style: Style | None,
                            offered: tuple[LoraEntry, ...]) -> tuple[JobRequest, tuple[Note, ...]]:
    """``req`` with the member's prompt in English where they asked, and a note that says what the model gets;
    where it cannot be done, ``req`` as it is and a note that says why. The English is wrapped again as the
    member's words were: in its ``style``'s template, with the trigger words of its LoRAs (``offered``). A job
    made from a translated one (Reroll, V, U) keeps its translation. The negative prompt is left as it is: it is
    often the server's own default, in English already."""
    p = req.params
    if not p.translate or p.translated:
        return req, ()
    if translator is None:
        return req, (NOT_SET_UP,)
    typed = p.typed_prompt
    try:
        english = clean_prompt(await translator.english_soon(typed))
        prompt = clean_prompt(with_triggers(style.apply(english, "")[0] if style else english, p.loras, offered))
    except (TranslationError, ParamError) as exc:
        return req, (Phrase.of("Your words were not translated ({why}); they went to the model as you typed them.",
                               why=phrase_of(exc)),)
    params = replace(p, prompt=prompt, user_prompt=typed, translated=True)
    said = () if english == typed else (Phrase.of("Translated for the model: \u201c{english}\u201d", english=english),)
    return replace(req, params=params), said


__all__ = ["WAIT_S", "PromptTranslator", "TranslationError", "translate_request"]
