"""The bot's own messages in the member's language, through discord.py against the emulator: the queue line while
a job waits, the result's embed and its buttons, and the replies the catalogue has (refusals, errors)."""

from __future__ import annotations

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord


async def test_a_german_members_job_speaks_german(gated_engine, fake: FakeDiscord, start_bot) -> None:
    """Queued while the model loads, then the result: both in German; numbers, the prompt and the name as they
    are."""
    engine, release = gated_engine
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "ein Fuchs im Schnee --seed 7"}, locale="de")
        queued = (await inter.wait_original(lambda m: "In der Warteschlange" in m["content"], timeout=10))["content"]
        release()
        result = await inter.wait_original(message_has_result, timeout=60)
    assert "als Nächstes dran" in queued and "Das Modell lädt noch" in queued
    [embed] = result["embeds"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Seed"] == "7" and "Größe" in fields and "Schritte" in fields and "Zeit" in fields
    assert embed["footer"]["text"] == "Auftrag 1 \u00b7 angefragt von alice"
    assert embed["description"] == "ein Fuchs im Schnee"
    labels = [c.get("label") for row in result["components"] for c in row["components"]]
    assert labels[:5] == ["Neu würfeln", "Info", "Löschen", "Bearbeiten", "PNG"] and "V1" in labels


async def test_an_english_members_job_stays_english(engine, fake: FakeDiscord, start_bot) -> None:
    """en-US (or a language without a file) reads the English labels."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox --seed 7"}, locale="ko")
        result = await inter.wait_original(message_has_result, timeout=60)
    fields = {f["name"] for f in result["embeds"][0]["fields"]}
    assert {"Seed", "Size", "Steps", "Time"} <= fields


async def test_a_refusal_and_an_error_in_the_members_language(engine, fake: FakeDiscord, start_bot) -> None:
    """An empty prompt, in German; the per-member cap's refusal, in Spanish, its numbers as they are."""
    async with start_bot(engine):
        empty = await fake.slash("imagine", {"prompt": "   "}, locale="de")
        await empty.wait_acked(timeout=3)
        engine.policy.env_defaults = engine.policy.env_defaults.merged({"per_user_cap": 1})
        busy = [await fake.slash("imagine", {"prompt": f"a fox {n}"}, locale="es-ES") for n in range(2)]
        refused = await busy[1].wait_original(lambda m: "Ya tienes" in (m.get("content") or ""), timeout=10)
    assert empty.callbacks[0].json["data"]["content"].startswith("\u274c der Prompt ist leer")
    assert "Ya tienes 1 trabajos de imagen en espera o en curso (el límite es 1)" in refused["content"]
