"""One model load at a time in this process.

diffusers and transformers build a model's modules on the "meta" device and then fill in the weights, patching
torch's module construction process-wide while they do; two loads in two threads at once (the image model on the
worker's thread, the translation model on its own) leave one of them with weights still on meta. Every
``from_pretrained`` of a model runs under ``LOADING``.
"""

from __future__ import annotations

import threading

LOADING = threading.RLock()  # re-entrant: a model's loader loads its parts (LoRAs, classifier) under it too

__all__ = ["LOADING"]
