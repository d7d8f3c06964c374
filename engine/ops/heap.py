"""Keep Python's cyclic garbage collector from stalling the event loop.

Once the model is loaded the process holds about half a million long-lived objects (torch,
diffusers, transformers and discord.py modules, the pipeline's modules). A full (generation 2)
collection walks all of them with the GIL held: 0.22 s on the 2-core CI machine, which stalled every
acknowledgement of a 100-command burst by that much (benchmarks/README.md). Freezing them moves them
to the permanent generation, so later collections only look at objects created afterwards.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_long_lived(reason: str) -> int:
    """Collect garbage, then exclude every surviving object from future collections.

    Collecting first means no garbage cycle is frozen (it would never be freed). Returns the number
    of objects now frozen. Safe to call again later (e.g. after a compile warm-up): each call
    freezes what has accumulated since.
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("gc: froze %d long-lived objects after %s (%.0f ms)", frozen, reason,
              1000 * (time.perf_counter() - started))
    return frozen
