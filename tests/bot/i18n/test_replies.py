"""The bot's own messages in the member's language, through discord.py against the emulator: the queue line while
a job waits, the result's embed and its buttons, and the replies the catalogue has (refusals, errors)."""

from __future__ import annotations

from tests.bot.conftest import message_has_result, private_refusal
from tests.support.discord_emulator import FakeDiscord


async def _imagine_answer(engine, fake: FakeDiscord, start_bot, options: dict, locale: str) -> str:
    """The immediate private answer to /imagine with ``options`` from a member whose Discord speaks ``locale``."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", options, locale=locale)
        await inter.wait_acked(timeout=3)
    return inter.callbacks[0].json["data"]["content"]


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


async def test_an_unknown_model_is_explained_in_german(engine, fake: FakeDiscord, start_bot) -> None:
    """A parameter error with names in it: its words in German, the name asked for and the offered ones as they
    are."""
    text = await _imagine_answer(engine, fake, start_bot, {"prompt": "ein Fuchs --model nope"}, "de")
    assert text.startswith("\u274c das Modell 'nope' wird hier nicht angeboten; wähle aus: ")


async def test_blocked_words_are_refused_in_spanish(engine, fake: FakeDiscord, start_bot) -> None:
    """A refusal naming the member's own words: in Spanish, the words as they are."""
    await engine.policy.edit_blocklist(str(fake.default_guild.id), block="lava")
    text = await _imagine_answer(engine, fake, start_bot, {"prompt": "un río de lava"}, "es-419")
    assert "Tu prompt contiene palabras bloqueadas (lava). Por favor, reformúlalo." in text


async def test_a_quota_refusal_is_french_down_to_which_quota(engine, fake: FakeDiscord, start_bot) -> None:
    """A refusal whose words hold another phrase (which quota): both in French, the numbers as they are."""
    await engine.policy.set_defaults(str(fake.default_guild.id), {"quota_member_day": 1})
    async with start_bot(engine):
        first = await fake.slash("imagine", {"prompt": "un renard"}, locale="fr")
        await first.wait_original(message_has_result, timeout=60)
        text = await private_refusal(await fake.slash("imagine", {"prompt": "un autre renard"}, locale="fr"))
    assert "Cela dépasserait votre quota quotidien sur ce serveur : 1 images sur 1 utilisées, il en reste 0." in text
    assert "UTC" in text


async def test_quota_answers_in_japanese(engine, fake: FakeDiscord, start_bot) -> None:
    """/quota's labels and lines in Japanese; the numbers as they are, the reset as a Discord timestamp (which each
    member's client writes in their language)."""
    from tests.bot.test_commands import _answer

    await engine.policy.set_defaults(str(fake.default_guild.id), {"quota_member_day": 5})
    async with start_bot(engine):
        text = await _answer(await fake.slash("quota", {}, locale="ja"))
    assert text.startswith("**このサーバーでのあなたの画像**\n**今日:** 残り 5 / 5 枚 \u00b7 リセット: <t:")
    assert "**この時間帯:** 上限なし" in text and "**サーバー全体**" in text


async def test_preferences_are_shown_in_portuguese(engine, fake: FakeDiscord, start_bot) -> None:
    """/prefer set answers with what was saved, in Brazilian Portuguese: labels, on/off and the note."""
    from tests.bot.test_commands import _answer

    async with start_bot(engine):
        text = await _answer(await fake.slash("prefer set", {"steps": 3, "fast": True}, locale="pt-BR"))
    assert text.startswith("\u2705 Salvo. **Suas preferências** (onde quer que você use /imagine;")
    assert "Passos 3" in text and "Modo rápido ativado" in text


async def test_an_unknown_inline_parameter_is_explained_in_french(engine, fake: FakeDiscord, start_bot) -> None:
    """The bot's own parsing errors are phrases too: the parameter typed and the known ones as they are."""
    text = await _imagine_answer(engine, fake, start_bot, {"prompt": "un renard --zoom 2"}, "fr")
    # a member's values are escaped for Discord's markdown (a backslash it does not show)
    assert text.replace("\\", "").startswith("\u274c paramètre inconnu --zoom ; connus : --ar, --no")


async def test_status_answers_in_spanish(engine, fake: FakeDiscord, start_bot) -> None:
    """/status's labels and states in Spanish; the model's name, the device and the numbers as they are."""
    from tests.bot.test_commands import _answer

    async with start_bot(engine):
        text = await _answer(await fake.slash("status", {}, locale="es-ES"))
    assert "**Modelo:** `" in text and "(listo)" in text and "**Dispositivo:** cpu" in text
    assert "**Cola:** 0 en espera \u00b7 0 en curso" in text and "**Última hora:** 0 trabajos" in text


async def test_show_says_in_german_that_the_job_is_not_yours(engine, fake: FakeDiscord, start_bot) -> None:
    from tests.bot.test_commands import _answer

    async with start_bot(engine):
        text = await _answer(await fake.slash("show", {"job": 42}, locale="de"))
    assert text.startswith("Du hast keinen Auftrag 42. /show nimmt die Nummer eines deiner eigenen Aufträge")


async def test_a_file_that_is_not_a_picture_is_refused_in_japanese(engine, fake: FakeDiscord, start_bot) -> None:
    """The bot's own picture checks are phrases: the file's name and type as they are, the words in Japanese."""
    notes = fake.upload_attachment("notes.txt", b"hello")
    text = await _imagine_answer(engine, fake, start_bot, {"prompt": "狐", "image": notes}, "ja")
    assert text.startswith("\u274c notes.txt は text/plain で、画像ではありません。")


async def test_settings_show_answers_in_french(engine, fake: FakeDiscord, start_bot) -> None:
    """/settings show, for a moderator who reads French: labels and the NSFW policy's summary in French, values as
    they are."""
    from tests.bot.test_commands import MANAGE_GUILD, _answer

    await engine.policy.edit_blocklist(str(fake.default_guild.id), block="lava")
    async with start_bot(engine):
        text = await _answer(await fake.slash("settings show", {}, locale="fr", permissions=MANAGE_GUILD))
    assert text.startswith("**Valeurs par défaut de ce serveur**\nTaille 64x64 \u00b7 ")
    assert "Mots bloqués : lava" in text and "Règle NSFW : " in text


async def test_a_note_beside_the_result_is_german(engine, fake: FakeDiscord, start_bot) -> None:
    """Notes are phrases too: an inline --steps replaced by the steps option is told in German with the result."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "ein Fuchs --steps 3", "steps": 2}, locale="de")
        result = await inter.wait_original(message_has_result, timeout=60)
    assert "steps 3 im Prompt wurde durch die Option steps ersetzt (2)." in result["content"]


async def test_show_gives_a_failed_jobs_reason_in_german(engine, fake: FakeDiscord, start_bot) -> None:
    """/show of a failed job says the engine's reason (stored in English) in the member's language, as the message
    under the job does."""
    from tests.bot.test_commands import _answer

    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "ein Fuchs"}, locale="de")
        await inter.wait_original(message_has_result, timeout=60)
        [done] = await engine.history(limit=1)
        failed = engine.store.insert_job(done.requester, done.params)  # not queued: no worker takes it
        engine.store.set_failed(failed.id, "The GPU ran out of memory for 64x64 with 1 image(s). Try a smaller "
                                           "size or fewer images.")
        text = await _answer(await fake.slash("show", {"job": failed.id}, locale="de"))
    assert text == (f"Auftrag {failed.id} ist fehlgeschlagen: Der GPU ging bei 64x64 mit 1 Bild(ern) der Speicher "
                    "aus. Versuch eine kleinere Größe oder weniger Bilder.")
