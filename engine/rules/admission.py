"""The one admission path: every front door hands the engine a ``JobRequest`` and gets one answer, the
queued job or ``Refused`` with the reason (and, for a quota, when it resets).

The rules run in one order, here and nowhere else: the model's state, blocklists, the NSFW rule, the
per-member and queue caps (a place is held in the queue, in memory, so they hold under a burst), then the
front door's acknowledgement (Discord wants one within 3 s; nothing above reads the disk), the member's
picture, and finally one SQLite transaction that counts the quota and writes the job row together
(``JobStore.insert_job``). Whatever refuses or fails gives the held place back; a job that later fails or
is cancelled stops counting against quotas because its row says so.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from engine.engine_settings import EngineSettings
from engine.jobs.ledger import JobLedger
from engine.jobs.queue import JobQueue
from engine.jobs.records import Job, JobRequest, Refused, Requester
from engine.jobs.store import QuotaGuard
from engine.media.remix import Remix
from engine.requests.checks import Phrase
from engine.requests.params import GenerationParams
from engine.rules.audit import AuditLog
from engine.rules.deny import DenyList
from engine.rules.policy import Policy
from engine.rules.quota import Usage, check, price

# awaited once the cheap rules passed: the front door acknowledges the request there
Acknowledge = Callable[[], Awaitable[None]]

MAX_LISTED_WORDS = 5
OUTSIDE_SERVERS = "outside servers (DMs and group DMs)"
# refusals that moderators want to see in the log (the others are about load, not about what was asked)
LOGGED_REFUSALS = frozenset({"denied", "blocked", "nsfw_channel", "pictures_off", "pictures_nsfw_only"})
NSFW_CHANNELS_ONLY = ("On this server, images can only be generated in channels marked NSFW (age-restricted). "
                      "Try one of those.")


class Admission:
    """Decides whether a request becomes a queued job, and queues it."""

    def __init__(self, settings: EngineSettings, policy: Policy, queue: JobQueue, ledger: JobLedger, remix: Remix,
                 availability: Callable[[bool], None], deny_list: DenyList, audit: AuditLog) -> None:
        self._settings = settings
        self._policy = policy
        self._deny_list = deny_list
        self._audit = audit
        self._queue = queue
        self._ledger = ledger
        self._remix = remix
        self._availability = availability  # raises Refused when the model cannot run this (fast) request

    async def admit(self, req: JobRequest, acknowledge: Acknowledge | None = None) -> Job:
        """Apply every rule to ``req``, store the job and queue it; raises Refused (or the picture's error)."""
        scope = self._policy.place_scope(req.requester.guild_id, req.place)
        try:
            self._refuse_denied(req, scope)
            params, requester = req.params, self._with_nsfw_rule(req)
            self._availability(params.fast)
            self._refuse_blocked(params, scope)
            self._refuse_nsfw_choice(req)
            self._refuse_unlisted(req)
            if req.picture is not None:
                self._refuse_picture(req)
        except Refused as exc:
            if exc.reason in LOGGED_REFUSALS:  # for the moderation log; the answer goes out first
                who = f"{req.requester.user_name} ({req.requester.user_id})"
                self._audit.record_later(scope, who, "refused", f"{exc.reason}: {req.params.prompt}")
            raise
        operator = req.priority > 0
        cap = None if operator else self._policy.place_defaults(requester.guild_id, req.place).per_user_cap
        hold = self._queue.admit(requester.user_id, per_user_cap=cap, queue_cap=self._settings.queue_cap)
        try:
            if acknowledge is not None:
                await acknowledge()
            if req.picture is not None:
                params = await self._remix.from_picture(params, await req.picture(), keep_size=req.keep_size)
            exempt = operator or self._policy.quota_exempt(requester.guild_id, req.place.role_ids)
            try:
                return await self._ledger.create(requester, params, priority=req.priority, images=price(params),
                                                 quota=None if exempt else self._quota(req, params),
                                                 then=lambda job: self._queue.add(job, hold))
            except Exception:
                if req.picture is not None:  # refused after all: its picture leaves nothing behind
                    await self._remix.forget_picture(params)
                raise
        except BaseException:
            hold.release()
            raise

    def _quota(self, req: JobRequest, params: GenerationParams) -> QuotaGuard:
        """The quota rule where the request was made, run inside the transaction that writes its job. Outside
        servers (DMs, group DMs) the operator's member quotas count the member's images there."""
        guild_id = req.requester.guild_id
        defaults, images = self._policy.quota_defaults(guild_id, req.place), price(params)
        where = "on this server" if guild_id else OUTSIDE_SERVERS

        def quota(usage: Usage) -> Refused | None:
            return check(defaults, usage, images, time.time(), where)

        return quota

    def may_show(self, req: JobRequest) -> None:
        """The rules that hold for posting an existing job's images somewhere else (/show): that place's deny list,
        blocklist, the NSFW marks of its model and LoRAs and, for a job made from the member's own picture, its
        pictures rule. Raises Refused as ``admit`` does; nothing is stored or queued."""
        scope = self._policy.place_scope(req.requester.guild_id, req.place)
        self._refuse_denied(req, scope)
        self._refuse_blocked(req.params, scope)
        self._refuse_nsfw_choice(req)
        if req.params.init_image:
            self._refuse_picture(req)

    def _refuse_denied(self, req: JobRequest, scope: str) -> None:
        if req.priority > 0:  # the operator's own jobs
            return
        denial = self._deny_list.denial(req.requester.user_id, scope)
        if denial is not None:
            if denial.until is None:
                raise Refused("denied", "You may not make images here. If you think this is a mistake, ask this "
                                        "server's moderators (or the bot's operator).")
            raise Refused("denied", "You may not make images here until {until}. If you think this is a mistake, "
                                    "ask this server's moderators (or the bot's operator).",
                          until=Phrase(f"<t:{int(denial.until)}:f>"))  # a Discord timestamp: the door's markup

    def _refuse_blocked(self, params: GenerationParams, scope: str) -> None:
        # what the model reads and what the member typed: a translated prompt (--translate) holds the one, not the
        # other
        blocked = self._policy.blocked_words(f"{params.prompt}\n{params.user_prompt}", scope)
        if blocked:
            listed = ", ".join(w[:50] for w in blocked[:MAX_LISTED_WORDS])
            raise Refused("blocked", "Your prompt contains blocked words ({words}). Please rephrase it.", words=listed)

    def _refuse_nsfw_choice(self, req: JobRequest) -> None:
        """A model or LoRA the operator marked NSFW (``name[nsfw]`` in MODELS or LORAS) only in channels marked NSFW."""
        limits = self._policy.limits
        marked = [e.name for e in limits.models if e.nsfw and e.name == req.params.model]
        marked += [e.name for e in limits.loras if e.nsfw and e.name in dict(req.params.loras)]
        if marked and not req.place.channel_nsfw:
            raise Refused("nsfw_channel", "{names} is marked NSFW by the bot's operator, so it is used only in "
                                          "channels marked NSFW (age-restricted); try one of those, or choose "
                                          "another." if len(marked) == 1 else
                          "{names} are marked NSFW by the bot's operator, so they are used only in channels marked "
                          "NSFW (age-restricted); try one of those, or choose others.", names=", ".join(marked))

    def _refuse_unlisted(self, req: JobRequest) -> None:
        """Only the models and LoRAs this place allows (``/settings limits``), for every job: a Reroll or V of a job
        made before the list changed too."""
        if req.priority > 0:  # the operator's own jobs
            return
        d = self._policy.place_defaults(req.requester.guild_id, req.place)
        model = req.params.model or self._policy.limits.models[0].name
        unlisted = [model] if d.models_allowed and model not in d.models_allowed else []
        unlisted += [name for name, _ in req.params.loras if d.loras_allowed and name not in d.loras_allowed]
        if unlisted:
            raise Refused("not_allowed", "{names} is not allowed here (this server's /settings limits); choose "
                                         "another." if len(unlisted) == 1 else
                          "{names} are not allowed here (this server's /settings limits); choose others.",
                          names=", ".join(unlisted))

    def _refuse_picture(self, req: JobRequest) -> None:
        """Whether members may start from their own picture here (the server's ``pictures`` setting)."""
        rule = self._policy.place_defaults(req.requester.guild_id, req.place).pictures
        if rule == "off":
            raise Refused("pictures_off", "Starting from your own picture is switched off here; run /imagine "
                                          "without an image.")
        if rule == "nsfw_only" and not req.place.channel_nsfw:
            raise Refused("pictures_nsfw_only", "Here you may start from your own picture only in channels marked "
                                                "NSFW (age-restricted); try one of those, or run /imagine without "
                                                "an image.")

    def _with_nsfw_rule(self, req: JobRequest) -> Requester:
        """The requester with the NSFW policy and threshold in force where it asked, recorded for delivery.

        Under "block" with no image classifier to withhold only flagged images, nothing is generated there.
        """
        policy, threshold = self._policy.nsfw_rule(req.requester.guild_id, req.place)
        if policy == "block" and not self._settings.safety_model_id:
            raise Refused("nsfw_channel", NSFW_CHANNELS_ONLY)
        delivery = {**req.requester.delivery, "nsfw": policy, "nsfw_threshold": threshold}
        return replace(req.requester, delivery=delivery)
