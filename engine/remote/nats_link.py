"""Connecting to NATS and declaring the JetStream streams, buckets and consumers both sides use.

Only imported when NATS_URL is set. Every declaration is idempotent, so the bot and each worker
declare what they need on start in any order.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from engine.engine_settings import RemoteSettings
from engine.remote import wire

log = logging.getLogger(__name__)

T = TypeVar("T")
# a publish retried after a server restart carries the same Nats-Msg-Id, so it is stored once
DUPLICATE_WINDOW_S = 600.0
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class Link:
    """One connection and the JetStream objects on it."""

    nc: Client
    js: JetStreamContext
    images: ObjectStore
    workers: KeyValue

    async def close(self) -> None:
        """Flush what was published, then close the connection."""
        try:
            await self.nc.flush(timeout=2)
        except Exception:  # closing during a server outage must not hang shutdown
            pass
        await self.nc.close()


def safe_url(url: str) -> str:
    """NATS_URL for logs: any user:password@ part is replaced, for each server of a cluster list."""
    return ",".join(re.sub(r"//[^/@]*@", "//[credentials]@", part.strip()) for part in url.split(","))


def _tls(settings: RemoteSettings) -> ssl.SSLContext | None:
    if not (settings.nats_tls_ca or settings.nats_tls_cert):
        return None
    context = ssl.create_default_context(cafile=str(settings.nats_tls_ca) if settings.nats_tls_ca else None)
    if settings.nats_tls_cert:
        context.load_cert_chain(str(settings.nats_tls_cert),
                                str(settings.nats_tls_key) if settings.nats_tls_key else None)
    return context


async def connect(settings: RemoteSettings, name: str) -> Link:
    """Connect once (raising when no server answers, so callers can retry and say so), then reconnect
    forever on their own, and declare streams and buckets."""
    # nats-py's first connect keeps trying each server max_reconnect_attempts times (forever with -1)
    # before it raises; try each once here and let ``retry`` pace and log, then allow reconnects forever
    options: dict[str, Any] = {"servers": [u.strip() for u in settings.nats_url.split(",")], "name": name,
                               "reconnect_time_wait": 1, "connect_timeout": 5, "allow_reconnect": False,
                               "max_reconnect_attempts": 1}
    if settings.nats_user:
        options["user"] = settings.nats_user
    if settings.nats_password:
        options["password"] = settings.nats_password.get_secret_value()
    if settings.nats_token:
        options["token"] = settings.nats_token.get_secret_value()
    if settings.nats_creds:
        options["user_credentials"] = str(settings.nats_creds)
    tls = _tls(settings)
    if tls is not None:
        options["tls"] = tls

    async def disconnected() -> None:
        log.warning("NATS connection lost; reconnecting")

    async def reconnected() -> None:
        log.info("NATS connection restored")

    async def error(exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    nc = await nats.connect(**options, disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error)
    nc.options["allow_reconnect"] = True  # read at each disconnect
    nc.options["max_reconnect_attempts"] = -1
    js = nc.jetstream()
    await declare_streams(js, settings)
    images = await js.create_object_store(wire.IMAGES_BUCKET)
    workers = await js.create_key_value(KeyValueConfig(bucket=wire.WORKERS_BUCKET,
                                                       ttl=settings.worker_heartbeat * wire.HEARTBEAT_MISSES))
    return Link(nc, js, images, workers)


async def declare_streams(js: JetStreamContext, settings: RemoteSettings) -> None:
    """The jobs work queue, the results stream and the dead-letter stream (max-deliveries advisories)."""
    streams = [
        StreamConfig(name=wire.JOBS_STREAM, subjects=["imagine.jobs.>"], retention=RetentionPolicy.WORK_QUEUE,
                     storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_S),
        StreamConfig(name=wire.RESULTS_STREAM, subjects=[f"{wire.RESULTS_SUBJECT}.>"],
                     retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
                     duplicate_window=DUPLICATE_WINDOW_S),
        StreamConfig(name=wire.DEAD_STREAM, storage=StorageType.FILE, retention=RetentionPolicy.WORK_QUEUE,
                     subjects=[f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{wire.JOBS_STREAM}.>"]),
    ]
    for config in streams:
        try:
            await js.add_stream(config)
        except BadRequestError:  # exists with other settings (an older version): keep it, say so
            log.warning("JetStream stream %s exists with different settings; using it as it is", config.name)


def workers_consumer_config(settings: RemoteSettings, model_id: str) -> ConsumerConfig:
    """The workers' shared durable pull consumer of one model's jobs."""
    return ConsumerConfig(durable_name=wire.workers_consumer(model_id), ack_policy=AckPolicy.EXPLICIT,
                          ack_wait=settings.nats_ack_wait, max_deliver=settings.nats_max_deliver,
                          filter_subject=wire.jobs_subject(model_id), deliver_policy=DeliverPolicy.ALL)


# tries of one message on the bot's own consumers before the server gives up on it (a result that fails to be
# stored this often is logged by the server's advisory; the job itself is swept like any lost one)
BOT_MAX_DELIVER = 10


def results_consumer_config() -> ConsumerConfig:
    """The bot's durable pull consumer of results."""
    return ConsumerConfig(durable_name=wire.RESULTS_CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=60,
                          max_deliver=BOT_MAX_DELIVER, deliver_policy=DeliverPolicy.ALL)


def dead_letters_consumer_config() -> ConsumerConfig:
    """The bot's durable pull consumer of dead-letter advisories."""
    return ConsumerConfig(durable_name=wire.DEAD_CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=60,
                          max_deliver=BOT_MAX_DELIVER, deliver_policy=DeliverPolicy.ALL)


async def publish(js: JetStreamContext, subject: str, payload: bytes, msg_id: str,
                  stopping: Callable[[], bool] = lambda: False) -> None:
    """Publish to JetStream with a message id, retrying through a server outage (the id makes it once)."""
    await retry(lambda: js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=5),
                f"publish {msg_id}", stopping)


async def retry(call: Callable[[], Awaitable[T]], what: str, stopping: Callable[[], bool] = lambda: False) -> T:
    """Run ``call`` until it succeeds, backing off up to 8 s between tries (NATS may be restarting)."""
    attempt = 0
    while True:
        try:
            return await call()
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            if stopping():
                raise
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            attempt += 1
            if attempt in (1, 5) or attempt % 20 == 0:
                log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
