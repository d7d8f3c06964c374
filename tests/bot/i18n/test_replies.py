"""The bot's own messages about a job in the member's language, through discord.py against the emulator: the queue
line while it waits, the result's embed and its buttons, in German for a member whose Discord is in German."""

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
