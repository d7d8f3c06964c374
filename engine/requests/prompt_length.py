"""Telling users when their prompt is longer than the text encoder reads.

The count uses a private copy of the model's tokenizer behind a lock: a fast tokenizer keeps
padding and truncation state on the object, and the pipeline sets both while it encodes a batch,
so sharing one tokenizer between the worker and a counting thread breaks the worker's call.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from typing import Any

from engine.requests.checks import Phrase

log = logging.getLogger(__name__)


class PromptLength:
    """Counts tokens with its own tokenizer; ``note`` is the user-facing sentence when a prompt is cut."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = copy.deepcopy(tokenizer)
        # CLIP reads 77 positions, start and end markers included; the tokenizer says so itself
        self.limit = int(self._tokenizer.model_max_length)
        self._lock = threading.Lock()

    @classmethod
    def of_model(cls, model_id: str) -> PromptLength | None:
        """The counter of a model's first tokenizer, read from its Hub id or local directory alone (a bot host
        that sends batches to GPU workers has no model of its own); None, with a warning, when it cannot be
        loaded (offline without the files: requests go on, without the note). Blocking: call off the event loop."""
        from transformers import CLIPTokenizer

        try:
            return cls(CLIPTokenizer.from_pretrained(model_id, subfolder="tokenizer"))
        except Exception as exc:
            log.warning("prompt length notes are off: the tokenizer of %s could not be loaded (%s)", model_id, exc)
            return None

    def note(self, prompt: str) -> tuple[Phrase, ...]:
        """One sentence saying where the prompt was cut, or nothing when it fits (blocking: call off the loop)."""
        with self._lock:
            ids = self._tokenizer(prompt).input_ids
            if len(ids) <= self.limit:
                return ()
            kept = self._tokenizer.decode(ids[1:self.limit - 1])
        return (Phrase.of("Your prompt is {tokens} tokens long; the text encoder reads only the first {limit} (up to "
                          "\u201c\u2026{kept}\u201d), so the rest is ignored.", tokens=len(ids), limit=self.limit,
                          kept=kept[-40:].strip()),)


async def prompt_notes(counter: PromptLength | None, prompt: str) -> tuple[Phrase, ...]:
    """The notes for a submitted prompt (off the event loop); none without a counter or when counting fails."""
    if counter is None:
        return ()
    try:
        return await asyncio.to_thread(counter.note, prompt)
    except Exception:  # a note is a courtesy: never fail a queued job over it
        log.exception("could not count the prompt's tokens")
        return ()
