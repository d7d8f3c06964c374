"""Pure scheduling logic: fair order between users and grouping of compatible jobs.

No I/O and no threads here, so every rule is unit-tested directly.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Pending:
    """What the scheduler needs to know about a queued job."""

    job_id: int
    user_id: str
    priority: int
    images: int
    batch_key: Hashable
    model: str = ""  # the model it runs on ("": the default)


def fair_order(pending: Sequence[Pending], last_served: Mapping[str, int]) -> list[Pending]:
    """The order queued jobs will run in.

    Higher priority first (the operator's playground); within a priority, round-robin between
    users: the user served longest ago goes next, one job per turn, each user's jobs in
    submission order. ``last_served`` maps user -> a counter value of their last turn (absent =
    never served, which goes first, by their oldest job).
    """
    result: list[Pending] = []
    for priority in sorted({p.priority for p in pending}, reverse=True):
        queues: OrderedDict[str, deque[Pending]] = OrderedDict()
        for p in sorted((p for p in pending if p.priority == priority), key=lambda p: p.job_id):
            queues.setdefault(p.user_id, deque()).append(p)
        # turn order: never-served users first (by oldest job), then least recently served; a heap of turns, so
        # each pick costs O(log users) rather than a scan of every user (5 000 jobs of 1 000 members: 5M steps)
        turns = [(last_served.get(u, -1), q[0].job_id, u) for u, q in queues.items()]
        heapq.heapify(turns)
        counter = max(last_served.values(), default=0) + 1
        while turns:
            _served, _first, user = heapq.heappop(turns)
            result.append(queues[user].popleft())
            if queues[user]:
                heapq.heappush(turns, (counter, 0, user))  # counters only grow: no two turns are equal
            counter += 1
    return result


def lane_position(lane: Mapping[str, Sequence[Pending]], last_served: Mapping[str, int],
                  job: Pending) -> tuple[int, int]:
    """(jobs ahead of ``job``, images of those and its own) within its priority, as ``fair_order`` would place
    it, from each member's waiting jobs of that priority (``lane``: member -> jobs in id order) without ordering
    the queue: O(members x the job's rank among its member's jobs) instead of O(jobs x log members).

    Round-robin serves every member's k-th job in round k, and the members take their turns in the same order
    every round (a member's next turn is pushed behind every earlier one), so ahead of a member's k-th job are
    min(n, k) jobs of each member with n jobs waiting and, in round k, one of each member whose turn comes first.
    """
    mine = lane[job.user_id]
    rank = next(i for i, p in enumerate(mine) if p.job_id == job.job_id)
    turn = (last_served.get(job.user_id, -1), mine[0].job_id)
    ahead = images = 0
    for user, jobs in lane.items():
        take = min(len(jobs), rank)
        if user != job.user_id and len(jobs) > rank and (last_served.get(user, -1), jobs[0].job_id) < turn:
            take += 1
        ahead += take
        images += sum(p.images for p in jobs[:take])
    return ahead, images + job.images


def next_batch(ordered: Sequence[Pending], max_images: int) -> list[Pending]:
    """The jobs for the next pipeline call: the head job plus later compatible ones.

    Compatible means the same batch key. Jobs are taken in fair order while the total image
    count stays within ``max_images``; the head job always runs, even if it alone is larger.
    """
    if not ordered:
        return []
    head = ordered[0]
    batch = [head]
    images = head.images
    for p in ordered[1:]:
        if p.batch_key == head.batch_key and images + p.images <= max_images:
            batch.append(p)
            images += p.images
        if images >= max_images:
            break
    return batch


def warm_first(ordered: Sequence[Pending], loaded: Collection[str], passed_over: Mapping[int, int],
               patience: int) -> tuple[list[Pending], int | None]:
    """``ordered`` with the first job whose model is loaded moved to the front, when the head's model is not loaded
    and the head was passed over fewer than ``patience`` times; and the id of the head passed over (else None).

    Loading another model takes seconds (and may unload one that later jobs need), while serving a loaded one costs
    nothing extra, so a job for a loaded model may go ahead; but only ``patience`` times, so no job waits long for
    its model. Jobs of the same priority only: the operator's Playground is never overtaken.
    """
    if not ordered or ordered[0].model in loaded or passed_over.get(ordered[0].job_id, 0) >= patience:
        return list(ordered), None
    head = ordered[0]
    for i, p in enumerate(ordered[1:], start=1):
        if p.priority != head.priority:
            break
        if p.model in loaded:
            return [p, *ordered[:i], *ordered[i + 1:]], head.job_id
    return list(ordered), None
