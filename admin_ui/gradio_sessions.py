"""Bounding Gradio's per-session state, which otherwise grows with every API call.

Each browser tab and each ``/gradio_api/call/<name>`` request is a Gradio session. Gradio keeps a
copy of the whole panel's config per session (about 170 KB here) for up to 10 000 sessions, and an
entry per session in its queue's bookkeeping (``pending_event_ids_session``) that is never removed
once its events finished: 3000 status calls grew the process by ~550 MB. One operator needs a few
sessions, so the panel keeps PANEL_SESSIONS (least recently used go first) and a housekeeping pass
drops the queue entries of sessions that are gone and have nothing pending.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

# sessions whose state is kept: browser tabs and API clients of one operator, with room to spare;
# a tab's timer uses its session every few seconds, so a live tab is never the least recently used
PANEL_SESSIONS = 64
HOUSEKEEPING_SECONDS = 30.0


# per-event timing records Gradio keeps for its monitoring page (off in the panel); 10 000 by default
ANALYTICS_EVENTS = 500


def bound_sessions(blocks: gr.Blocks) -> None:
    """Cap the sessions whose state Gradio keeps (call before mounting: the app reads it then)."""
    blocks.state_session_capacity = PANEL_SESSIONS
    blocks._queue.ANALYTICS_MAX_EVENTS = ANALYTICS_EVENTS


def prune(app: Any, blocks: gr.Blocks) -> int:
    """Drop queue bookkeeping of sessions Gradio no longer holds state for and that wait for nothing.

    Runs on the event loop between requests (no await inside), so no handler sees it half done.
    Returns how many entries went.
    """
    live = app.state_holder.session_data
    queue = blocks._queue
    removed = 0
    for session, pending in list(queue.pending_event_ids_session.items()):
        if not pending and session not in live:
            del queue.pending_event_ids_session[session]
            removed += 1
    messages = queue.pending_messages_per_session
    for session in list(messages.keys()):
        if session not in live and not queue.pending_event_ids_session.get(session) and messages[session].empty():
            del messages[session]
            removed += 1
    return removed


def session_counts(app: Any, blocks: gr.Blocks) -> dict[str, int]:
    """Sizes of the per-session structures: the state holder and the queue's two session tables."""
    queue = blocks._queue
    return {"sessions": len(app.state_holder.session_data),
            "queued_event_ids": len(queue.pending_event_ids_session),
            "message_queues": len(queue.pending_messages_per_session)}


__all__ = ["HOUSEKEEPING_SECONDS", "PANEL_SESSIONS", "bound_sessions", "prune", "session_counts"]
