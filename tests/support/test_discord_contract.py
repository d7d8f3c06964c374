"""The contract checker itself (discord_contract.py): what Discord's spec refuses is refused, and said where."""

from __future__ import annotations

from tests.support.discord_contract import Violation, contract, discord_errors

CALLBACK = "/interactions/1/token/callback"


def _modal(label: str) -> dict:
    return {"type": 9, "data": {"custom_id": "form", "title": "A form", "components": [
        {"type": 1, "components": [{"type": 4, "custom_id": "a", "style": 1, "label": label}]}]}}


def test_a_label_over_45_characters_is_refused_at_its_path() -> None:
    """A 48-character text input label (Discord allows 45) is a violation naming that field."""
    violations = contract().request_violations("POST", CALLBACK, _modal("x" * 48))
    assert [v.field for v in violations] == ["data.components.0.components.0.label"]
    assert contract().request_violations("POST", CALLBACK, _modal("x" * 45)) == []


def test_snowflakes_may_be_integers() -> None:
    """discord.py sends new attachments' ids as 0, 1, ...; Discord takes them."""
    body = {"content": "hi", "attachments": [{"id": 0, "filename": "a.png", "description": "a fox"}]}
    assert contract().request_violations("PATCH", "/webhooks/1/token/messages/@original", body) == []


def test_an_embed_field_over_1024_characters_is_refused() -> None:
    """Embed limits come from the spec too."""
    body = {"embeds": [{"title": "t", "fields": [{"name": "n", "value": "v" * 1025}]}]}
    violations = contract().request_violations("POST", "/channels/1/messages", body)
    assert violations and violations[0].field == "embeds.0.fields.0.value"


def test_errors_are_nested_like_discords() -> None:
    """The 50035 answer's ``errors`` nest the failing field's path, with ``_errors`` at the leaf."""
    errors = discord_errors([Violation("POST", "/x", "data.components.0.label", "too long")])
    assert errors == {"data": {"components": {"0": {"label": {"_errors": [
        {"code": "BASE_TYPE_INVALID", "message": "too long"}]}}}}}


def test_routes_without_a_schema_pass() -> None:
    """A route the spec has no body schema for is not checked (DELETE, GET)."""
    assert contract().request_violations("DELETE", "/webhooks/1/token/messages/@original", {"a": 1}) == []
