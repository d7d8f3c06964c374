"""Prompt permutations and --repeat: the expansion alone, then through discord.py against the emulator."""

from __future__ import annotations

import pytest

from bot.permutations import MAX_PROMPTS, expand
from engine.requests.params import ParamError
from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord


def test_choices_multiply_out_in_order() -> None:
    """Each {a, b} group is multiplied by the others, inline parameters included."""
    assert expand("a {red, green} car --ar {1:1, 16:9}") == [
        "a red car --ar 1:1", "a red car --ar 16:9", "a green car --ar 1:1", "a green car --ar 16:9"]


def test_repeat_runs_each_prompt_that_many_times() -> None:
    """--repeat N makes N jobs of each prompt, and is itself removed."""
    assert expand("a {red, blue} fox --repeat 2 --seed 5") == ["a red fox --seed 5"] * 2 + ["a blue fox --seed 5"] * 2


def test_repeat_may_be_written_without_a_space() -> None:
    """--repeat3 is --repeat 3 (the inline parser would otherwise answer that --repeat works in /imagine only)."""
    assert expand("a fox --repeat3") == ["a fox"] * 3


def test_a_prompt_without_choices_is_itself() -> None:
    """Nothing changes for an ordinary prompt, spacing included."""
    assert expand("a  fox --no text,  blur") == ["a  fox --no text,  blur"]


@pytest.mark.parametrize(("text", "message"), [
    ("a {1,2,3,4} {a,b,c} fox", "stands for 12 jobs"),
    ("a {red,} fox", "have an empty one"),
    ("a fox --repeat 0", "--repeat needs a whole number from 1"),
    ("a fox --repeat", "--repeat needs a whole number from 1"),
    ("a fox --repeat 2 --repeat 3", "given twice"),
])
def test_bad_choices_and_repeats_say_what_is_wrong(text: str, message: str) -> None:
    """Too many jobs, an empty choice or a wrong repeat is refused with the reason (at most MAX_PROMPTS)."""
    with pytest.raises(ParamError, match=message):
        expand(text)
    assert MAX_PROMPTS == 10


async def _two_delivered(fake: FakeDiscord, prompt: str):
    """/imagine ``prompt`` (two jobs); waits until the original response and a followup both show a result."""
    inter = await fake.slash("imagine", {"prompt": prompt})
    await inter.wait_original(message_has_result, timeout=60)
    await fake.wait_until(lambda: any(message_has_result(m) for m in inter.followups), timeout=60,
                          what="the second job's result in its followup")
    return inter


async def test_each_choice_is_a_job_with_a_message_of_its_own(engine, fake: FakeDiscord, start_bot):
    """The first job answers the interaction, the second gets a followup; both deliver their images there."""
    async with start_bot(engine):
        inter = await _two_delivered(fake, "a {red, blue} fox")
        jobs = await engine.history(limit=10)
    assert sorted(j.params.prompt for j in jobs) == ["a blue fox", "a red fox"]
    followup = next(m for m in inter.followups if message_has_result(m))
    assert "a blue fox" in str(followup["embeds"])


async def test_repeats_with_a_seed_get_new_seeds(engine, fake: FakeDiscord, start_bot):
    """--repeat 2 --seed 5: the first job keeps seed 5, the second gets another one."""
    async with start_bot(engine):
        await _two_delivered(fake, "a fox --repeat 2 --seed 5")
        jobs = sorted(await engine.history(limit=10), key=lambda j: j.id)
    assert [j.params.prompt for j in jobs] == ["a fox", "a fox"]
    assert jobs[0].params.seed == 5 and jobs[1].params.seed != 5


async def test_a_refused_choice_is_told_privately_and_stops_the_rest(engine, fake: FakeDiscord, start_bot):
    """With one job allowed per member, the first is queued; the second is refused privately, its message removed,
    and the third is not tried."""
    guild = str(fake.default_guild.id)
    await engine.policy.set_defaults(guild, {"per_user_cap": 1})
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a {red, green, blue} fox"})
        await fake.wait_until(lambda: any(m["flags"] & 64 for m in inter.followups), timeout=30,
                              what="the private refusal")
        await inter.wait_original(message_has_result, timeout=60)
        jobs = await engine.history(limit=10, states=("queued", "running", "done"))
    refusal = next(m for m in inter.followups if m["flags"] & 64)
    assert "limit is 1" in refusal["content"]
    assert [j.params.prompt for j in jobs] == ["a red fox"]
    assert not [m for m in inter.followups if not m["flags"] & 64]  # the refused job's message was removed
