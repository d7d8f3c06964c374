"""Connecting to NATS, and the JetStream streams, buckets and consumers of one deployment.

Only imported when NATS_URL is set. The bot host alone declares them, with bounds (NATS_MAX_BYTES and
NATS_MAX_AGE on every stream and bucket), updates them when its settings change, and declares them again when
the server comes back without its store; GPU workers only bind to what exists, so a worker's credential
needs no right to create, change or delete anything (scripts/nats_auth.py writes such a configuration).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
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
    """One connection, the deployment's names, and the JetStream objects on it."""

    nc: Client
    js: JetStreamContext
    images: ObjectStore
    workers: KeyValue
    names: wire.Names

    async def close(self) -> None:
        """Flush what was published, then close the connection."""
        await _close(self.nc)


async def _close(nc: Client) -> None:
    try:
        await nc.flush(timeout=2)
    except Exception:  # closing during a server outage must not hang shutdown
        pass
    await nc.close()


def safe_url(url: str) -> str:
    """NATS_URL for logs: any user:password@ part is replaced, for each server of a cluster list."""
    return ",".join(re.sub(r"//[^/@]*@", "//[credentials]@", part.strip()) for part in url.split(","))


def unencrypted_hosts(settings: RemoteSettings) -> list[str]:
    """Servers of NATS_URL reached in plain text off this machine (no tls:// scheme, no NATS_TLS_CA/CERT)."""
    if settings.nats_tls_ca or settings.nats_tls_cert:
        return []
    hosts = []
    for part in settings.nats_url.split(","):
        parsed = urlsplit(part.strip())
        if parsed.scheme in ("nats", "ws") and parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            hosts.append(safe_url(part.strip()))
    return hosts


def warn_unencrypted(settings: RemoteSettings) -> None:
    """Log a warning for each server reached in plain text off this machine (bot host and workers alike)."""
    for host in unencrypted_hosts(settings):
        log.warning("NATS traffic to %s is not encrypted (prompts, images and credentials); use tls:// with "
                    "NATS_TLS_CA off this machine (docs/several-gpus.md)", host)


def _tls(settings: RemoteSettings) -> ssl.SSLContext | None:
    if not (settings.nats_tls_ca or settings.nats_tls_cert):
        return None
    context = ssl.create_default_context(cafile=str(settings.nats_tls_ca) if settings.nats_tls_ca else None)
    if settings.nats_tls_cert:
        context.load_cert_chain(str(settings.nats_tls_cert),
                                str(settings.nats_tls_key) if settings.nats_tls_key else None)
    return context


async def connect(settings: RemoteSettings, name: str, model_ids: Sequence[str], *, declare: bool,
                  reconnected: Callable[[], None] | None = None) -> Link:
    """Connect once (raising when no server answers, so callers can retry and say so), then reconnect forever
    on their own. ``declare`` (the bot host): declare and update the deployment's streams, buckets and
    consumers (one per model of ``model_ids``); otherwise (a worker) bind to them, raising NotReady until the bot
    has declared them."""
    # nats-py's first connect keeps trying each server max_reconnect_attempts times (forever with -1)
    # before it raises; try each once here and let ``retry`` pace and log, then allow reconnects forever
    options: dict[str, Any] = {"servers": [u.strip() for u in settings.nats_url.split(",")], "name": name,
                               "reconnect_time_wait": 1, "connect_timeout": 5, "allow_reconnect": False,
                               "max_reconnect_attempts": 1}
    if settings.nats_user:
        options["user"] = settings.nats_user
        # replies come to this user's own inboxes: a configuration can let each user read only its own
        options["inbox_prefix"] = f"_INBOX.{settings.nats_user}"
    if settings.nats_password:
        options["password"] = settings.nats_password.get_secret_value()
    if settings.nats_token:
        options["token"] = settings.nats_token.get_secret_value()
    if settings.nats_creds:
        options["user_credentials"] = str(settings.nats_creds)
    tls = _tls(settings)
    if tls is not None:
        options["tls"] = tls

    client: list[Client] = []

    async def on_disconnected() -> None:
        if not (client and client[0].is_closed):  # not when we close it ourselves
            log.warning("NATS connection lost; reconnecting")

    async def on_reconnected() -> None:
        log.info("NATS connection restored")
        if reconnected is not None:
            reconnected()

    async def on_error(exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    nc = await nats.connect(**options, disconnected_cb=on_disconnected, reconnected_cb=on_reconnected,
                            error_cb=on_error)
    client.append(nc)
    names = wire.Names(settings.nats_prefix)
    try:
        js = nc.jetstream()
        if declare:
            await declare_all(js, settings, model_ids)
        images, workers = await bind(js, names)
    except BaseException:  # a worker that cannot bind yet, or a refused declaration: no connection left behind
        await _close(nc)
        raise
    nc.options["allow_reconnect"] = True  # read at each disconnect
    nc.options["max_reconnect_attempts"] = -1
    return Link(nc, js, images, workers, names)


class NotReady(nats.errors.Error):
    """The deployment's streams or buckets are not there yet (the bot host declares them): try again."""


async def bind(js: JetStreamContext, names: wire.Names) -> tuple[ObjectStore, KeyValue]:
    """The images Object Store and the workers KV bucket, as declared by the bot host."""
    try:
        return await js.object_store(names.images_bucket), await js.key_value(names.workers_bucket)
    except (NotFoundError, nats.js.errors.BucketNotFoundError) as exc:
        raise NotReady(f"the buckets of NATS_PREFIX={names.prefix} do not exist yet; the bot host declares them "
                       f"when it connects") from exc


async def declare_all(js: JetStreamContext, settings: RemoteSettings, model_ids: Sequence[str]) -> None:
    """Declare (or update to these settings) every stream, bucket and consumer of the deployment: the workers'
    consumer of each model of ``model_ids`` (a batch goes only to workers that serve its model)."""
    names = wire.Names(settings.nats_prefix)
    limits = {"max_bytes": settings.nats_max_bytes, "max_age": settings.nats_max_age}
    for config in (
        StreamConfig(name=names.jobs_stream, subjects=[f"{names.prefix}.jobs.>"],
                     retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
                     duplicate_window=DUPLICATE_WINDOW_S, **limits),
        StreamConfig(name=names.results_stream, subjects=[f"{names.results_subject}.>"],
                     retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
                     duplicate_window=DUPLICATE_WINDOW_S, **limits),
        StreamConfig(name=names.dead_stream, storage=StorageType.FILE, retention=RetentionPolicy.WORK_QUEUE,
                     subjects=[f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{names.jobs_stream}.>"], **limits),
    ):
        try:
            await js.add_stream(config)
        except BadRequestError:  # exists with other settings (changed bounds, an older version): bring it up to date
            await js.update_stream(config)
    images = ObjectStoreConfig(bucket=names.images_bucket, ttl=settings.nats_max_age, max_bytes=settings.nats_max_bytes)
    await _bucket(js, f"OBJ_{names.images_bucket}", lambda: js.create_object_store(names.images_bucket, config=images),
        settings.nats_max_bytes, settings.nats_max_age)
    ttl = settings.worker_heartbeat * wire.HEARTBEAT_MISSES
    await _bucket(js, f"KV_{names.workers_bucket}", lambda: js.create_key_value(KeyValueConfig(
        bucket=names.workers_bucket, ttl=ttl, max_bytes=16 * 1024 * 1024, max_value_size=8192)),
        16 * 1024 * 1024, ttl)
    for model_id in model_ids:
        await declare_consumer(js, settings, model_id)
    await js.add_consumer(names.results_stream, results_consumer_config())
    await js.add_consumer(names.dead_stream, dead_letters_consumer_config())


async def declare_consumer(js: JetStreamContext, settings: RemoteSettings, model_id: str) -> None:
    """Declare the workers' consumer of one model's jobs (a model the panel added after the start needs one)."""
    # add_consumer creates a durable or updates the fields a server lets change (AckWait, MaxDeliver)
    await js.add_consumer(wire.Names(settings.nats_prefix).jobs_stream, workers_consumer_config(settings, model_id))


async def _bucket(js: JetStreamContext, stream: str, create: Callable[[], Awaitable[Any]], max_bytes: int,
                  max_age: float) -> None:
    try:
        await create()
    except BadRequestError:  # exists with other bounds: keep its data, change the bounds
        config = (await js.stream_info(stream)).config
        config.max_bytes, config.max_age = max_bytes, max_age
        await js.update_stream(config)


async def exists(js: JetStreamContext, names: wire.Names) -> bool:
    """False when the server lost the deployment's jobs stream (restarted without its store)."""
    try:
        await js.stream_info(names.jobs_stream)
    except NotFoundError:
        return False
    return True


def workers_consumer_config(settings: RemoteSettings, model_id: str) -> ConsumerConfig:
    """The workers' shared durable pull consumer of one model's jobs."""
    names = wire.Names(settings.nats_prefix)
    return ConsumerConfig(durable_name=names.workers_consumer(model_id), ack_policy=AckPolicy.EXPLICIT,
                          ack_wait=settings.nats_ack_wait, max_deliver=settings.nats_max_deliver,
                          filter_subject=names.jobs_subject(model_id), deliver_policy=DeliverPolicy.ALL)


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
                  stopping: Callable[[], bool] = lambda: False) -> PubAck:
    """Publish to JetStream with a message id, retrying through a server outage (the id makes it once)."""
    return await retry(lambda: js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=5),
                f"publish {msg_id}", stopping)


class StoreFull(Exception):
    """A stream or bucket of the deployment is at NATS_MAX_BYTES: trying again now would not help."""


def _is_full(exc: BaseException) -> bool:
    text = str(getattr(exc, "description", "") or exc).lower()
    return "maximum bytes" in text or "insufficient resources" in text


async def retry(call: Callable[[], Awaitable[T]], what: str, stopping: Callable[[], bool] = lambda: False) -> T:
    """Run ``call`` until it succeeds, backing off up to 8 s between tries (NATS may be restarting); a full store
    raises StoreFull at once."""
    attempt = 0
    while True:
        try:
            return await call()
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            if _is_full(exc):
                raise StoreFull(f"{what}: the NATS server's store of this deployment is full (NATS_MAX_BYTES)") \
                    from exc
            if stopping():
                raise
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            attempt += 1
            if attempt in (1, 5) or attempt % 20 == 0:
                log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
