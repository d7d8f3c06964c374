"""Styles tab through gradio_client: saving, refusing, deleting styles, and the default style of a scope."""

from __future__ import annotations

from engine.requests.params import ParamRequest, Style
from engine.rules.policy import GLOBAL


async def test_saved_style_is_used_by_the_next_request(call, engine):
    """A style saved in the panel is stored and wraps the next request that names it."""
    message, table, _pick, _default = await call("/save_style", "noir", "noir photo of {prompt}", "colour", 5, 20)
    assert "Saved the style 'noir'" in message and "noir photo of {prompt}" in table
    assert engine.styles.get("noir") == Style("noir", "noir photo of {prompt}", "colour", 5.0, 20)
    assert engine.resolve(ParamRequest("a fox", style="noir")).prompt == "noir photo of a fox"


async def test_template_without_placeholder_is_refused_inline(call, engine):
    """A template that does not say where the words go is not saved; the tab says why."""
    message, *_ = await call("/save_style", "noir", "noir photo", "", None, None)
    assert "Not saved" in message and "{prompt}" in message
    assert engine.styles.names() == []


async def test_deleted_style_is_gone(call, engine):
    """Delete removes the style from the store and the table."""
    await call("/save_style", "noir", "noir photo of {prompt}", "", None, None)
    message, table, *_ = await call("/delete_style", "noir")
    assert "Deleted the style 'noir'" in message and "noir photo" not in table
    assert engine.styles.get("noir") is None


async def test_default_style_of_a_server(call, engine):
    """The default style saved for a server applies to that server's requests only."""
    await call("/save_style", "noir", "noir photo of {prompt}", "", None, None)
    message = await call("/save_default_style", "111", "noir")
    assert "Saved the default style" in message
    assert engine.policy.defaults("111").style == "noir" and engine.policy.defaults(GLOBAL).style == ""


async def test_default_style_must_exist(call, engine):
    """A default naming a style that does not exist is refused inline."""
    message = await call("/save_default_style", GLOBAL, "pastel")
    assert "Not saved" in message and "unknown" in message
