"""Every text the bot and the engine build for a member has every language: the templates of errors, refusals,
notes and replies found in the code (read from its syntax tree) are all in each language's catalogue."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bot.i18n.catalogue import LANGUAGES, key_of, language

REPO = Path(__file__).resolve().parents[3]
# what only the operator reads, in the panel or at start-up (in English, like the panel)
OPERATOR_ONLY = {"engine/rules/catalogue.py", "engine/requests/sizes.py:parse_size_list"}
REPLIES = {"reply_ephemeral", "reply_privately"}


def _strings(node: ast.expr) -> list[str]:
    """The literal texts an argument can be (both sides of a conditional)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    return []


def _arguments(call: ast.Call) -> list[ast.expr]:
    """The argument of ``call`` that holds a member's words, if it is one of the calls that carry them."""
    func = call.func
    name = getattr(func, "id", None) or getattr(func, "attr", None)
    owner = getattr(getattr(func, "value", None), "id", None)
    if name in ("ParamError", "SizeError", "PictureError", "Phrase") or (name == "of" and owner == "Phrase"):
        return call.args[:1]
    if name in ("Refused", "say") or name in REPLIES:
        return call.args[1:2]
    return []


def _member_texts() -> dict[str, str]:
    """English text -> where it is built, for every member-facing literal in bot/ and engine/."""
    found: dict[str, str] = {}
    for root in ("bot", "engine"):
        for path in sorted((REPO / root).rglob("*.py")):
            where = str(path.relative_to(REPO))
            if where in OPERATOR_ONLY:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            enclosing: dict[ast.AST, str] = {}
            for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
                for inner in ast.walk(function):  # outer functions first: an inner one overwrites them
                    enclosing[inner] = function.name
            for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
                if f"{where}:{enclosing.get(call, '')}" in OPERATOR_ONLY:
                    continue
                for argument in _arguments(call):
                    for text in _strings(argument):
                        if any(c.isalpha() for c in text):
                            found.setdefault(text, f"{where}:{call.lineno}")
    return found


def test_the_scan_finds_the_texts() -> None:
    """The scan is not empty: it finds a refusal, an error and a note (a scan that found nothing would pass the test
    below without checking anything)."""
    texts = _member_texts()
    assert len(texts) > 150
    assert {"Your prompt contains blocked words ({words}). Please rephrase it.", "size: {why}",
            "Translated for the model: \u201c{english}\u201d"} <= set(texts)


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_member_facing_text_is_translated(code: str) -> None:
    catalogue = language(code)["texts"]
    missing = {text: where for text, where in _member_texts().items() if key_of(text)[0] not in catalogue}
    assert missing == {}
