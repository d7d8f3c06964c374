"""What the bot's messages say: safe text, embeds, and the lines users read while they wait."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.i18n.speech import say, spoken
from engine.jobs.records import Job
from engine.requests.checks import Note
from engine.requests.params import GenerationParams

# every message the bot sends pings nobody; the token-expiry fallback adds the requester only
NO_MENTIONS = discord.AllowedMentions.none()
BRAND_COLOUR = discord.Colour.from_rgb(46, 160, 90)


ALT_TEXT_MAX = 1024  # Discord's limit for an attachment's description


def requester_only(user_id: int | str) -> discord.AllowedMentions:
    """Allow a ping of the requester and of nobody else."""
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(int(user_id))],
                                   replied_user=False)


def safe(text: str, limit: int) -> str:
    """User text made inert for Discord: no markdown, no mentions, no code-fence escape, cut to ``limit``."""
    text = discord.utils.escape_markdown(text, as_needed=False)
    text = discord.utils.escape_mentions(text)
    # a zero-width space after every '<' keeps <@id>, <@&id>, <#id> and <t:..> from rendering
    text = text.replace("<", "<\u200b")
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + "\u2026"
    return text


def duration(seconds: float | None) -> str:
    """``~12 s``, ``~3 min``; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    return f"~{round(seconds / 60)} min"


def queued_text(position: int, eta: float | None, *, loading: bool = False, notes: Sequence[Note] = (),
                locale: str = "") -> str:
    """The message while a job waits (in ``locale``, a Discord locale code)."""
    where = say(locale, "next in line") if position <= 1 else say(locale, "position {position} in the queue",
                                                                    position=position)
    line = "\u23f3 " + say(locale, "Queued \u2014 {where}", where=where)
    if eta is not None:
        line += " \u00b7 " + say(locale, "ready in {eta}", eta=duration(eta))
    if loading:
        line += "\n\u2699\ufe0f " + say(locale, "The model is still loading; your job will start as soon as it is "
                                             "ready.")
    for note in notes:
        line += f"\n\u2139\ufe0f {safe(spoken(note, locale), 400)}"
    return line[:2000]  # Discord's limit for a message: many notes, in a longer language, could pass it


def progress_text(step: int, total: int, images: int, locale: str = "") -> str:
    """The message while a job runs (in ``locale``)."""
    pct = round(100 * step / max(1, total))
    bar = "\u2588" * (pct // 10) + "\u2591" * (10 - pct // 10)
    what = say(locale, "Generating the image") if images == 1 else say(locale, "Generating {images} images",
                                                                          images=images)
    return f"\U0001f3a8 {what} \u2014 " + say(locale, "step {step}/{total}", step=step, total=total) + \
        f" `{bar}` {pct}%"


def withheld_text(withheld: list[int], total: int, *, checked: bool, locale: str = "") -> str:
    """Why images (0-based indexes of ``total``) are missing from a result: the server's NSFW policy "block"."""
    why = say(locale, "flagged as NSFW by the image safety check") if checked else \
        say(locale, "not checked for NSFW content")
    numbers = [str(i + 1) for i in withheld]
    if total == 1:
        which = say(locale, "The image was withheld: {why}.", why=why)
    elif len(withheld) == total:
        which = say(locale, "All {total} images were withheld: {why}.", total=total, why=why)
    elif len(numbers) == 1:
        which = say(locale, "Image {image} of {total} was withheld: {why}.", image=numbers[0], total=total, why=why)
    else:
        which = say(locale, "Images {images} of {total} were withheld: {why}.", images=", ".join(numbers),
                    total=total, why=why)
    return which + " " + say(locale, "This server shows such images only in channels marked NSFW (age-restricted). "
                                     "Ask in one of those to see them.")


def reproduce_line(p: GenerationParams, default_style: str = "") -> str:
    """An /imagine line that reproduces every image of the job (image k uses seed + k).

    A styled job is written with the user's words and ``--style``; an unstyled one in a server whose
    default style would otherwise wrap its words gets ``--style none``.
    """
    parts = [p.typed_prompt, f"--ar {p.width}x{p.height}", f"--seed {p.seed}", f"--steps {p.steps}",
             f"--cfg {p.guidance:g}"]
    if p.style or default_style:
        parts.append(f"--style {p.style or 'none'}")
    if p.count > 1:
        parts.append(f"--count {p.count}")
    if p.scheduler != "euler":
        parts.append(f"--scheduler {p.scheduler}")
    if p.fast:
        parts.append("--fast")
    if p.tile:
        parts.append("--tile")
    if p.translate:
        parts.append("--translate")
    if p.model:
        parts.append(f"--model {p.model}")
    if p.loras:
        parts.append("--lora " + ",".join(f"{name}:{weight:g}" for name, weight in p.loras))
    if p.typed_negative:
        parts.append(f"--no {p.typed_negative}")
    return "/imagine prompt: " + " ".join(parts)


def variation_line(p: GenerationParams) -> str:
    """Where an image-to-image job comes from: ``job 12, image 2 (strength 0.6)``, or the user's picture."""
    if p.source_job is None:
        return f"your picture (strength {p.strength:g})"
    if p.edit is not None:
        return f"job {p.source_job}, image {p.source_image + 1}"
    scale = f"{p.upscale}x, " if p.upscale > 1 else ""
    return f"job {p.source_job}, image {p.source_image + 1} ({scale}strength {p.strength:g})"


def source_label(p: GenerationParams) -> str:
    """The name of the field that says where an image-to-image job comes from."""
    if p.edit is not None:
        return f"{p.edit.label} of"  # at most 115 characters (25 cells): within a field name's 256
    if p.upscale > 1:
        return "Upscale of"
    return "Variation of" if p.source_job is not None else "Made from"


def alt_text(job: Job, index: int) -> str:
    """Image ``index``'s alt text (the attachment's description, read by screen readers): what it shows."""
    count = len(job.results) or job.params.count
    head = f"Image {index + 1} of {count}: " if count > 1 else "Image: "
    return (head + job.params.typed_prompt)[:ALT_TEXT_MAX]


def preview_alt_text(job: Job) -> str:
    """A progress preview's alt text."""
    return ("Unfinished preview of: " + job.params.typed_prompt)[:ALT_TEXT_MAX]


def result_embed(job: Job, *, image_name: str | None, locale: str = "") -> discord.Embed:
    """The embed under a result: prompt, seeds, size, steps, guidance, time taken (its labels in ``locale``)."""
    p = job.params
    embed = discord.Embed(description=safe(p.typed_prompt, 1500), colour=BRAND_COLOUR)
    seeds = ", ".join(str(s) for s in p.seeds)
    embed.add_field(name=say(locale, "Seed" if p.count == 1 else "Seeds"), value=seeds[:1024], inline=True)
    embed.add_field(name=say(locale, "Size"), value=f"{p.width}\u00d7{p.height}", inline=True)
    embed.add_field(name=say(locale, "Steps"), value=str(p.steps), inline=True)
    embed.add_field(name=say(locale, "Guidance"), value=f"{p.guidance:g}", inline=True)
    embed.add_field(name=say(locale, "Sampler"), value=("LCM (fast)" if p.fast else p.scheduler), inline=True)
    taken = (job.finished_at - job.created_at) if job.finished_at else None
    gen = " " + say(locale, "({seconds} s generating)", seconds=f"{job.gen_seconds:.1f}") if job.gen_seconds else ""
    embed.add_field(name=say(locale, "Time"), value=f"{duration(taken) or '?'}{gen}", inline=True)
    if p.style:
        embed.add_field(name=say(locale, "Style"), value=safe(p.style, 100), inline=True)
    if p.model:
        embed.add_field(name=say(locale, "Model"), value=p.model, inline=True)
    if p.loras:
        embed.add_field(name="LoRAs", value=", ".join(f"{name} {weight:g}" for name, weight in p.loras), inline=True)
    if p.typed_negative:
        embed.add_field(name=say(locale, "Negative prompt"), value=safe(p.typed_negative, 1000), inline=False)
    if p.is_image_to_image:
        embed.add_field(name=source_label(p), value=variation_line(p), inline=False)
    if image_name:
        embed.set_image(url=f"attachment://{image_name}")
    who = job.requester.user_name or job.requester.user_id
    embed.set_footer(text=say(locale, "Job {job} \u00b7 requested by {who}", job=job.id, who=who)[:2048])
    return embed


def notes_text(notes: Sequence[Note], locale: str = "") -> str | None:
    """Notes that go with a result (truncation, replaced options, files sent smaller), one line each, in ``locale``;
    None when there are none."""
    return "\n".join(f"\u2139\ufe0f {safe(spoken(n, locale), 400)}" for n in notes)[:1900] or None


def image_embed(job: Job, index: int, *, image_name: str | None, locale: str = "") -> discord.Embed:
    """The embed under one image posted alone (U<n>): the result's, titled with the image and its own seed."""
    embed = result_embed(job, image_name=image_name, locale=locale)
    embed.title = say(locale, "Image {image} of job {job}", image=index + 1, job=job.id)
    seeds = job.params.seeds
    embed.set_field_at(0, name=say(locale, "Seed"), value=str(seeds[index] if index < len(seeds) else seeds[0]),
                       inline=True)
    return embed


def info_text(job: Job, default_style: str = "") -> str:
    """The ephemeral Info answer: every parameter and the line that reproduces each image.

    ``default_style``: the style the server where Info was clicked would apply to a line without --style.
    """
    p = job.params
    lines = [f"**Job {job.id}** \u00b7 {job.state}",
             f"**Prompt:** {safe(p.typed_prompt, 900)}",
             f"**Negative:** {safe(p.typed_negative, 300) or '(none)'}",
             f"**Size:** {p.width}x{p.height} \u00b7 **Steps:** {p.steps} \u00b7 **Guidance:** {p.guidance:g} \u00b7 "
             f"**Sampler:** {'lcm (fast)' if p.fast else p.scheduler}",
             f"**Seeds:** {', '.join(map(str, p.seeds))}"]
    if p.style:
        lines.append(f"**Style:** {safe(p.style, 40)} \u2014 the model got: {safe(p.prompt, 400)}")
    if p.is_image_to_image:
        # the line carries no image, so it cannot redo image-to-image; say so rather than offer a line that lies
        lines.append(f"**{source_label(p)}:** {variation_line(p)}. The line below starts from noise, not from that "
                     f"image, so it makes new images with the same settings rather than these.")
    lines.append("**Same settings:**" if p.is_image_to_image else "**Reproduce:**")
    head = "\n".join(lines)
    # inside a code block nothing renders; a backtick in the prompt could close it, so swap it
    line = reproduce_line(p, default_style).replace("`", "\u2035")[: max(0, 1990 - len(head) - 9)]
    return f"{head}\n```\n{line}\n```"
