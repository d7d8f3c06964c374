"""The Imagine cog: /imagine and /cancel, the submit flow shared with the job buttons and forms, and the
delivery of every job's messages.

Validation happens before the acknowledgement (so refusals can be ephemeral and instant); the
acknowledgement (defer) comes before any disk or queue work, so it always lands within 3 s.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.cogs.buttons import IMAGINE_COG, JOB_BUTTONS
from bot.cogs.options import scheduler_choices, size_choices, style_completer
from bot.cogs.quota import quota_exempt
from bot.delivery.address import requester_for
from bot.delivery.router import Delivery
from bot.inline import build_request
from bot.installs import guild_installed
from bot.pictures import Picture, PictureError, download, refusal
from bot.replies import reply_ephemeral
from bot.settings import BotSettings
from engine.jobs import Refused
from engine.params import MAX_SEED, GenerationParams, ParamError
from engine.service import Engine
from engine.settings import EngineSettings

log = logging.getLogger(__name__)

ImagineCommand = app_commands.Command[Any, ..., None]


def _guild_id(interaction: discord.Interaction) -> str | None:
    return str(interaction.guild_id) if interaction.guild_id else None


def _channel_is_nsfw(interaction: discord.Interaction) -> bool:
    is_nsfw = getattr(interaction.channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


class ImagineCog(commands.Cog, name=IMAGINE_COG):
    """Generating images: the commands, the job buttons, and delivering each job's messages."""

    def __init__(self, bot: commands.Bot, engine: Engine, settings: BotSettings) -> None:
        self.bot = bot
        self.engine = engine
        self.delivery = Delivery(bot, engine, settings)
        # the size choices and bounds come from the deployment's settings, so /imagine is built per instance
        self.imagine_command = self._build_imagine(engine.settings)

    async def cog_load(self) -> None:
        """Add /imagine, the job buttons, and start delivering (also what finished while the bot was away)."""
        self.bot.tree.add_command(self.imagine_command)
        self.bot.add_dynamic_items(*JOB_BUTTONS)
        self.delivery.start()

    async def cog_unload(self) -> None:
        """Stop delivering, and take /imagine and the job buttons away (on close, too)."""
        # pending deliveries finish here, while the client's HTTP session is still open
        await self.delivery.stop()
        self.bot.remove_dynamic_items(*JOB_BUTTONS)
        self.bot.tree.remove_command(self.imagine_command.name)

    def _build_imagine(self, settings: EngineSettings) -> ImagineCommand:
        @app_commands.command(name="imagine", description="Generate images from a text prompt")
        @app_commands.describe(
            prompt="What to draw. Inline parameters work too: --ar 16:9 --seed 42 --no text --steps 30 --count 2",
            negative="What to keep out of the image",
            size="Image size (or use --ar 16:9 in the prompt)",
            steps=f"Denoising steps (1-{settings.max_steps})",
            guidance=f"How closely to follow the prompt (0-{settings.max_guidance:g})",
            seed=f"Seed for reproducible images (0-{MAX_SEED})",
            count=f"Number of images (1-{settings.max_count})",
            scheduler="Sampler",
            fast="Fast mode: 4 steps with LCM-LoRA",
            style="A style preset (or --style name in the prompt); none: no style",
            image="Start from your own picture (PNG, JPEG, WebP, GIF or BMP): image-to-image",
            strength="With image: how far to move from your picture (0.05 keeps it, 1 ignores it)",
        )
        @app_commands.choices(size=size_choices(settings), scheduler=scheduler_choices())
        @app_commands.autocomplete(style=style_completer(self.engine.styles))
        async def imagine(interaction: discord.Interaction, prompt: str, negative: str | None = None,
                          size: str | None = None, steps: int | None = None, guidance: float | None = None,
                          seed: int | None = None, count: int | None = None, scheduler: str | None = None,
                          fast: bool | None = None, style: str | None = None, image: discord.Attachment | None = None,
                          strength: app_commands.Range[float, 0.05, 1.0] | None = None) -> None:
            await self.imagine(interaction, prompt, picture=Picture.of(image) if image else None,
                               negative_prompt=negative, size=size, steps=steps, guidance=guidance, seed=seed,
                               count=count, scheduler=scheduler, fast=fast, style=style, strength=strength)

        return imagine

    async def imagine(self, interaction: discord.Interaction, prompt: str, *, picture: Picture | None = None,
                      **options: Any) -> None:
        """Validate (the fast-mode recipe is the engine's), then submit, from the user's ``picture`` if any.

        Also the end of the "Vary with Imagine" form (bot/cogs/forms.py).
        """
        try:
            why = refusal(picture) if picture is not None else None
            if why:
                raise ParamError(why)
            req, notes = build_request(prompt, options)
            if picture is None and req.strength is not None:
                raise ParamError("strength says how far to move from your picture; attach one with the image "
                                 "option, or leave strength out")
            params = self.engine.resolve(req, _guild_id(interaction))
        except ParamError as exc:
            await reply_ephemeral(interaction, f"\u274c {render.safe(str(exc), 1800)}")
            return
        await self.submit(interaction, params, notes, picture=picture, keep_size=req.size is not None)

    @app_commands.command(name="cancel", description="Cancel your queued image jobs")
    async def cancel(self, interaction: discord.Interaction) -> None:
        """Cancel every queued job of the user."""
        ids = await self.engine.cancel_user(str(interaction.user.id))
        text = f"Cancelled {len(ids)} queued job(s)." if ids else "You have no queued jobs."
        await reply_ephemeral(interaction, text)

    def nsfw_rule(self, interaction: discord.Interaction, guild_id: str | None) -> tuple[str, float]:
        """The NSFW policy and threshold for a request: the server's where it installed the bot, else "allow".

        A user install in a server without the bot follows that server's policy only when the operator
        gave the server defaults of its own (panel, or /settings while the bot was there): its members
        chose no policy for a bot they did not add, and DMs have none either. In a channel marked NSFW the
        policy is "allow".
        """
        if guild_id is None or _channel_is_nsfw(interaction):
            return "allow", self.engine.policy.defaults().nsfw_threshold
        if guild_installed(interaction) or self.engine.policy.overrides(guild_id):
            defaults = self.engine.policy.defaults(guild_id)
            return defaults.nsfw_policy, defaults.nsfw_threshold
        return "allow", self.engine.policy.defaults().nsfw_threshold

    async def submit(self, interaction: discord.Interaction, params: GenerationParams,
                     notes: tuple[str, ...] = (), *, picture: Picture | None = None, keep_size: bool = False) -> None:
        """Shared by /imagine, the job buttons and the forms: moderation, caps, defer, submit, show the position.

        With a ``picture`` the job starts from it: it is downloaded and handed to the engine after the
        acknowledgement (it may take seconds), cropped to the job's size (``keep_size``: the user chose it)
        or to the allowed size nearest its shape.
        """
        guild_id = _guild_id(interaction)
        blocked = self.engine.policy.blocked_words(params.prompt, guild_id)
        if blocked:
            await reply_ephemeral(interaction, "\U0001f6ab Your prompt contains blocked words ("
                                  + ", ".join(render.safe(w, 50) for w in blocked[:5])
                                  + "). Please rephrase it.")
            return
        policy, threshold = self.nsfw_rule(interaction, guild_id)
        if policy == "block" and not self.engine.settings.safety_model_id:
            # no classifier to withhold only the flagged images (engine/safety.py): nothing is generated here
            await reply_ephemeral(interaction, "\U0001f6ab On this server, images can only be generated in channels "
                                               "marked NSFW (age-restricted). Try one of those.")
            return
        requester = requester_for(interaction, nsfw=policy, nsfw_threshold=threshold)
        exempt = guild_id is not None and quota_exempt(interaction, self.engine.policy.defaults(guild_id))
        try:
            admission = self.engine.admit(requester, fast=params.fast, images=params.count, quota_exempt=exempt)
        except Refused as exc:
            await reply_ephemeral(interaction, f"\u270b {render.safe(exc.message, 1800)}")
            return
        try:
            await interaction.response.defer(thinking=True)
        except BaseException:
            admission.release()
            raise
        try:
            if picture is not None:
                params = await self.engine.remix.from_picture(params, await download(picture), keep_size=keep_size)
            submission = await self.engine.submit(params, requester, admission=admission, quota_exempt=exempt)
        except Exception as exc:  # the user already sees "thinking...": always replace it with an answer
            admission.release()  # (again is harmless) a picture that failed never reached the engine's submit
            if isinstance(exc, Refused):
                text = f"\u270b {render.safe(exc.message, 1800)}"
            elif isinstance(exc, (ParamError, PictureError)):
                text = f"\u274c {render.safe(str(exc), 1800)}"
            else:
                log.exception("interaction %s: could not queue the job", interaction.id)
                text = "\u274c The job could not be queued because of a problem on our side. Please try again."
            await interaction.edit_original_response(content=text, allowed_mentions=render.NO_MENTIONS)
            return
        tracker = self.delivery.tracker(submission.job)
        if tracker is not None:
            await tracker.queued(submission.position, submission.eta_seconds, notes + submission.notes)
