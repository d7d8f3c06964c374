"""``python -m engine.worker``: run one GPU worker (engine/remote/gpu_worker.py) against NATS_URL."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # before the tokenizers load: no fork warnings
    from engine.remote.gpu_worker import main

    sys.exit(main())
