"""Prompt blocklists: whole-word matching after Unicode and case normalisation."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# common look-alike substitutions people use to dodge word lists
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})


def normalize(text: str) -> str:
    """NFKC, case-fold, strip accents and zero-width characters, so 'Ｎｕｄｅ' and 'núde' match 'nude'."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return re.sub(r"[\u200b-\u200f\u2060\ufeff]", "", text)


def normalize_word(word: str) -> str:
    """The stored form of a blocklist entry (empty if nothing is left)."""
    return re.sub(r"\s+", " ", normalize(word)).strip()


def find_blocked(prompt: str, words: Iterable[str]) -> list[str]:
    """The blocklist entries that appear in ``prompt`` as whole words (or whole phrases)."""
    plain = normalize(prompt)
    variants = {plain, plain.translate(_LEET)}
    hits = []
    for word in words:
        entry = normalize_word(word)
        if not entry:
            continue
        pattern = re.compile(r"(?<!\w)" + r"\W*".join(map(re.escape, entry.split(" "))) + r"(?!\w)")
        if any(pattern.search(v) for v in variants):
            hits.append(entry)
    return hits
