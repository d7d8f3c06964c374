"""/show through discord.py against the emulator: a member's own job again, with its buttons, under the rule of
the place where it is shown."""

from __future__ import annotations

from engine.service import Engine
from tests.bot.conftest import button_ids, message_has_result
from tests.bot.test_commands import _answer
from tests.support.discord_emulator import FakeDiscord


async def _made(engine: Engine, fake: FakeDiscord, user=None) -> int:
    """A finished /imagine job of ``user`` (default: the emulator's default user); returns its id."""
    inter = await fake.slash("imagine", {"prompt": "a lighthouse at dawn"}, **({"user": user} if user else {}))
    await inter.wait_original(message_has_result, timeout=60)
    [job] = await engine.history(limit=1)
    return job.id


async def test_show_posts_the_members_job_with_its_buttons(engine, fake: FakeDiscord, start_bot):
    """The images, the embed and the job's buttons, posted where /show was used."""
    async with start_bot(engine):
        job_id = await _made(engine, fake)
        shown = await fake.slash("show", {"job": job_id})
        message = await shown.wait_original(message_has_result, timeout=30)
    assert not message["flags"] & 64  # in the channel, like the first result
    assert f"imagine:reroll:{job_id}" in button_ids(message) and f"imagine:vary:{job_id}:0" in button_ids(message)
    assert "a lighthouse at dawn" in str(message["embeds"])


async def test_show_refuses_another_members_job_privately(engine, fake: FakeDiscord, start_bot):
    """Someone else's job is not shown; the answer is private and names what /show takes."""
    async with start_bot(engine):
        job_id = await _made(engine, fake)
        text = await _answer(await fake.slash("show", {"job": job_id}, user=fake.add_user("mallory")))
    assert text.startswith(f"You have no job {job_id}.")


async def test_show_says_when_the_images_were_removed(engine, fake: FakeDiscord, start_bot):
    """A job whose images retention removed is explained, privately, with what to do instead."""
    async with start_bot(engine):
        job_id = await _made(engine, fake)
        engine.store.clear_results(job_id)
        text = await _answer(await fake.slash("show", {"job": job_id}))
    assert "removed by this bot's retention rule" in text


async def test_show_spoilers_flagged_images_where_the_server_says_so(engine, fake: FakeDiscord, start_bot):
    """Images are posted under the NSFW rule of the place where they are shown: unchecked images (no classifier)
    are spoilered under "spoiler", though the job was made where they were allowed."""
    guild = str(fake.default_guild.id)
    async with start_bot(engine):
        job_id = await _made(engine, fake)
        await engine.policy.set_defaults(guild, {"nsfw_policy": "spoiler"})
        shown = await fake.slash("show", {"job": job_id})
        message = await shown.wait_original(lambda m: bool(m.get("attachments")), timeout=30)
    assert all(a["filename"].startswith("SPOILER_") for a in message["attachments"])


async def test_show_offers_the_members_own_jobs_as_they_type(engine, fake: FakeDiscord, start_bot):
    """The job option's autocomplete lists the member's own finished jobs, not other members'."""
    async with start_bot(engine):
        mine = await _made(engine, fake)
        await _made(engine, fake, user=fake.add_user("someone"))
        inter = await fake.slash("show", {"job": ""}, focused="job")
        await inter.wait_acked(timeout=3)
    assert [c["value"] for c in inter.choices] == [mine]


async def test_show_is_private_when_asked(engine, fake: FakeDiscord, start_bot):
    """private:True shows the job only to the member."""
    async with start_bot(engine):
        job_id = await _made(engine, fake)
        shown = await fake.slash("show", {"job": job_id, "private": True})
        message = await shown.wait_original(message_has_result, timeout=30)
    assert message["flags"] & 64


async def test_show_holds_the_blocklist_of_the_place(engine, fake: FakeDiscord, start_bot):
    """A job whose prompt this server blocks is not shown here (made before the word was blocked, or elsewhere)."""
    async with start_bot(engine):
        job_id = await _made(engine, fake)
        await engine.policy.set_blocklist(str(fake.default_guild.id), ["lighthouse"])
        text = await _answer(await fake.slash("show", {"job": job_id}))
    assert "blocked words (lighthouse)" in text


async def test_a_private_job_is_shown_privately_unless_asked_otherwise(engine, fake: FakeDiscord, start_bot):
    """/show of a job that was private answers only the member by default."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a lighthouse at dawn", "private": True})
        await inter.wait_original(message_has_result, timeout=60)
        [job] = await engine.history(limit=1)
        shown = await fake.slash("show", {"job": job.id})
        message = await shown.wait_original(message_has_result, timeout=30)
    assert message["flags"] & 64
