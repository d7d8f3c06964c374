"""The Imagine cog: /imagine and /cancel, the submit flow shared with the job buttons and forms, and the
delivery of every job's messages.

Every rule is the engine's (engine/rules/admission.py): the cog hands it one request and answers what comes back.
The engine acknowledges (defer) before any disk work, so the answer always lands within 3 s.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.bot_settings import BotSettings
from bot.cogs.buttons import IMAGINE_COG, JOB_BUTTONS
from bot.cogs.canvas_buttons import CANVAS_BUTTONS
from bot.cogs.image_buttons import IMAGE_BUTTONS
from bot.cogs.options import lora_completer, model_completer, scheduler_choices, size_choices, style_completer
from bot.delivery.address import requester_for
from bot.delivery.router import Delivery
from bot.i18n.speech import locale_of
from bot.inline import build_request
from bot.installs import place_of
from bot.modals import FormKeys
from bot.permutations import expand
from bot.pictures import Picture, PictureError, download, refusal
from bot.replies import error_text, reply_ephemeral, reply_error, reply_privately
from engine.engine_settings import EngineSettings
from engine.jobs.records import JobRequest, Refused
from engine.requests.checks import Note
from engine.requests.params import MAX_SEED, GenerationParams, ParamError
from engine.rules.preferences import PRIVATE
from engine.service import Engine

log = logging.getLogger(__name__)

FORM_SECRET_KEY = "form_secret"  # in the store's small values

ImagineCommand = app_commands.Command[Any, ..., None]


def _guild_id(interaction: discord.Interaction) -> str | None:
    return str(interaction.guild_id) if interaction.guild_id else None


class ImagineCog(commands.Cog, name=IMAGINE_COG):
    """Generating images: the commands, the job buttons, and delivering each job's messages."""

    def __init__(self, bot: commands.AutoShardedBot, engine: Engine, settings: BotSettings) -> None:
        self.bot = bot
        self.engine = engine
        self.delivery = Delivery(bot, engine, settings)
        self.picture_hosts = frozenset(settings.picture_hosts)  # members' pictures come from Discord's CDN only
        self.form_keys = FormKeys(b"")  # replaced on load by the deployment's own secret
        # the size choices and bounds come from the deployment's settings, so /imagine is built per instance
        self.imagine_command = self._build_imagine(engine.settings)

    async def cog_load(self) -> None:
        """Add /imagine, the job buttons, and start delivering (also what finished while the bot was away)."""
        self.form_keys = FormKeys(await self._form_secret())
        self.bot.tree.add_command(self.imagine_command)
        self.bot.add_dynamic_items(*JOB_BUTTONS, *IMAGE_BUTTONS, *CANVAS_BUTTONS)
        self.delivery.start()

    async def _form_secret(self) -> bytes:
        """The deployment's secret for form keys, made once and kept in the store (open forms survive restarts)."""
        stored = await self.engine.kv_get(FORM_SECRET_KEY)
        if stored is None:
            stored = secrets.token_hex(32)
            await self.engine.kv_set(FORM_SECRET_KEY, stored)
        return bytes.fromhex(stored)

    async def cog_unload(self) -> None:
        """Stop delivering, and take /imagine and the job buttons away (on close, too)."""
        # pending deliveries finish here, while the client's HTTP session is still open
        await self.delivery.stop()
        self.bot.remove_dynamic_items(*JOB_BUTTONS, *IMAGE_BUTTONS, *CANVAS_BUTTONS)
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
            private="Only you see the result (default: your /prefer choice, else public)",
            tile="Seamless tiles: the image repeats without edges (also --tile)",
            lora="LoRAs by name, with weights if you like: pixel:0.8 ink (or --lora in the prompt)",
            model="The model to draw with (or --model in the prompt); default: this server's",
            translate="Your words go to the model in English first (also --translate)",
        )
        @app_commands.choices(size=size_choices(settings), scheduler=scheduler_choices())
        @app_commands.autocomplete(style=style_completer(self.engine.styles), lora=lora_completer(self.engine),
                                   model=model_completer(self.engine))
        async def imagine(interaction: discord.Interaction, prompt: str, negative: str | None = None,
                          size: str | None = None, steps: int | None = None, guidance: float | None = None,
                          seed: int | None = None, count: int | None = None, scheduler: str | None = None,
                          fast: bool | None = None, style: str | None = None, image: discord.Attachment | None = None,
                          strength: app_commands.Range[float, 0.05, 1.0] | None = None,
                          private: bool | None = None, tile: bool | None = None, lora: str | None = None,
                          model: str | None = None, translate: bool | None = None) -> None:
            await self.imagine(interaction, prompt, picture=Picture.of(image) if image else None, private=private,
                               negative_prompt=negative, size=size, steps=steps, guidance=guidance, seed=seed,
                               count=count, scheduler=scheduler, fast=fast, style=style, strength=strength,
                               tile=tile, loras=lora, model=model, translate=translate)

        return imagine

    async def imagine(self, interaction: discord.Interaction, prompt: str, *, picture: Picture | None = None,
                      private: bool | None = None, **options: Any) -> None:
        """Validate every job the prompt stands for (its {a, b} choices and --repeat: bot/permutations.py; the
        fast-mode recipe is the engine's), then submit them, from the user's ``picture`` if any: the first answers
        the interaction, each other one has a followup message of its own. Nothing is queued when one is invalid.

        Also the end of the "Vary with Imagine" form (bot/cogs/forms.py).
        """
        prepared: list[tuple[GenerationParams, tuple[Note, ...], bool]] = []
        try:
            why = refusal(picture) if picture is not None else None
            if why:
                raise ParamError(why)
            texts = expand(prompt)
            for index, text in enumerate(texts):
                req, notes = build_request(text, options)
                if picture is None and req.strength is not None:
                    raise ParamError("strength says how far to move from your picture; attach one with the image "
                                     "option, or leave strength out")
                # the member's own preferences (/prefer) fill what the request leaves open
                params, pref_notes = await self.engine.resolve_for(req, _guild_id(interaction),
                                                                   str(interaction.user.id))
                if req.seed is not None and text in texts[:index]:  # a repeat: new seeds, or the same image again
                    params = params.with_seed(random.SystemRandom().randint(0, MAX_SEED))
                prepared.append((params, notes + pref_notes, req.size is not None))
        except ParamError as exc:
            await reply_error(interaction, exc)
            return
        private = await self._private(interaction, private)
        (params, notes, keep_size), *others = prepared
        queued = await self.submit(interaction, params, notes, picture=picture, keep_size=keep_size, private=private)
        for params, notes, keep_size in others:
            if not queued:  # a refusal (cap, quota...) would refuse the rest the same way
                break
            queued = await self._submit_followup(interaction, params, notes, picture=picture, keep_size=keep_size,
                                                 private=private)

    async def _submit_followup(self, interaction: discord.Interaction, params: GenerationParams,
                               notes: tuple[Note, ...], *, picture: Picture | None, keep_size: bool,
                               private: bool) -> bool:
        """One more job of an acknowledged /imagine, shown in a followup message of its own; False when refused
        (the member is told privately and the message removed)."""
        try:
            message = await interaction.followup.send("\u23f3 Queued\u2026", wait=True, ephemeral=private,
                                                      allowed_mentions=render.NO_MENTIONS)
        except discord.HTTPException as exc:  # the token expired, or Discord refused: the rest is not queued
            log.warning("interaction %s: no message for one more job (%s); the rest is not queued", interaction.id,
                        exc.status)
            with contextlib.suppress(discord.HTTPException):
                await interaction.followup.send("\u274c Discord refused a message for the next of your prompts, so "
                                                "it and the rest were not queued; run them again.", ephemeral=True)
            return False
        request = JobRequest(params, requester_for(interaction, private=private, message_id=message.id),
                             place_of(interaction), keep_size=keep_size,
                             picture=(lambda: download(picture, self.picture_hosts)) if picture is not None else None)
        try:
            submission = await self.engine.request(request)
        except Exception as exc:  # every refusal and failure gets an answer, privately
            with contextlib.suppress(discord.HTTPException):
                await message.delete()
            await interaction.followup.send(self._refusal_text(interaction, exc), ephemeral=True,
                                            allowed_mentions=render.NO_MENTIONS)
            return False
        tracker = self.delivery.tracker(submission.job)
        if tracker is not None:
            await tracker.queued(submission.position, submission.eta_seconds, notes + submission.notes)
        return True

    @app_commands.command(name="cancel", description="Cancel your queued image jobs")
    async def cancel(self, interaction: discord.Interaction) -> None:
        """Cancel every queued job of the user."""
        ids = await self.engine.cancel_user(str(interaction.user.id))
        text = f"Cancelled {len(ids)} queued job(s)." if ids else "You have no queued jobs."
        await reply_ephemeral(interaction, text)

    async def submit(self, interaction: discord.Interaction, params: GenerationParams,
                     notes: tuple[Note, ...] = (), *, picture: Picture | None = None, keep_size: bool = False,
                     private: bool | None = None, origin_private: bool | None = None) -> bool:
        """Shared by /imagine, the job buttons and the forms: one request to the engine, which applies every rule
        (engine/rules/admission.py), acknowledges through ``defer`` once the instant ones passed, and queues the job.

        With a ``picture`` the job starts from it: the engine fetches it after the acknowledgement (it may take
        seconds) and crops it to the job's size (``keep_size``: the user chose it) or to the allowed size nearest
        its shape. A refusal before the acknowledgement is an instant private answer; after it, the member is
        told privately and the public placeholder is taken away. ``private`` and ``origin_private``: ``_private``.
        """
        private = await self._private(interaction, private, origin_private)
        request = JobRequest(params, requester_for(interaction, private=private), place_of(interaction),
                             picture=(lambda: download(picture, self.picture_hosts)) if picture is not None else None,
                             keep_size=keep_size)

        async def acknowledge() -> None:
            await interaction.response.defer(thinking=True, ephemeral=private)

        try:
            submission = await self.engine.request(request, acknowledge=acknowledge)
        except discord.HTTPException:  # Discord refused the acknowledgement (expired): nobody is left to tell
            raise
        except Exception as exc:  # every refusal and failure gets an answer, privately
            await reply_privately(interaction, self._refusal_text(interaction, exc))
            return False
        tracker = self.delivery.tracker(submission.job)
        if tracker is not None:
            await tracker.queued(submission.position, submission.eta_seconds, notes + submission.notes)
        return True

    async def _private(self, interaction: discord.Interaction, asked: bool | None,
                       origin_private: bool | None = None) -> bool:
        """Whether the result reaches only the member: as asked; else as the result it starts from (a private
        result's Reroll stays private): ``origin_private`` where the interaction's message is not that result (a
        Vary (Region) form, opened from a private grid), else that message; else the member's /prefer choice."""
        if asked is not None:
            return asked
        if origin_private is None:
            message = getattr(interaction, "message", None)
            origin_private = message is not None and message.flags.ephemeral
        if origin_private:
            return True
        return bool((await self.engine.preferences.get(str(interaction.user.id))).get(PRIVATE, False))

    @staticmethod
    def _refusal_text(interaction: discord.Interaction, exc: Exception) -> str:
        if isinstance(exc, (Refused, ParamError, PictureError)):
            return error_text(exc, locale_of(interaction))
        log.error("interaction %s: could not queue the job", interaction.id, exc_info=exc)
        return "\u274c The job could not be queued because of a problem on our side. Please try again."
