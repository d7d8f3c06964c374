"""Batches the server gave up on: JetStream's max-deliveries advisories, read from the deployment's dead-letter
stream. Each names the batch's message in the jobs stream; the batch goes to the dispatcher (which tries its
jobs one at a time, or sets a lone job aside) and then leaves the stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from engine.remote import wire
from engine.remote.nats_link import Link

log = logging.getLogger(__name__)

POLL_S = 1.0


async def dead_letter_loop(link: Link, max_deliver: int, on_dead: Callable[[wire.BatchMessage], Awaitable[None]],
                           stopping: Callable[[], bool]) -> None:
    """Read advisories until ``stopping()``; each dead batch is handed to ``on_dead`` once, then deleted."""
    js, names = link.js, link.names
    sub = await js.pull_subscribe_bind(durable=wire.DEAD_CONSUMER, stream=names.dead_stream)
    while not stopping():
        try:
            msgs = await sub.fetch(10, timeout=POLL_S)
        except asyncio.TimeoutError:
            continue
        except Exception as exc:  # reconnecting, or the store was lost until the sweep declares it again
            log.debug("dead letters fetch: %s", exc)
            await asyncio.sleep(POLL_S)
            continue
        for msg in msgs:
            try:
                seq = int(json.loads(msg.data)["stream_seq"])
            except (ValueError, KeyError, TypeError) as exc:
                log.error("dropping a malformed dead-letter advisory: %s", exc)
                await msg.term()
                continue
            try:
                stored = await js.get_msg(names.jobs_stream, seq)
                batch = wire.BatchMessage.model_validate_json(stored.data or b"")
            except Exception as exc:  # already removed (withdrawn past its deadline, or an earlier pass)
                log.info("dead letter %s: batch no longer in the stream (%s)", seq, exc)
            else:
                log.error("batch %s failed %d times on GPU workers", batch.batch, max_deliver)
                await on_dead(batch)
                await js.delete_msg(names.jobs_stream, seq)
            await msg.ack()
