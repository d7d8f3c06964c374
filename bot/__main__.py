"""``python -m bot``: the whole service (Discord bot + engine + admin panel), kept as the name operators know.

The wiring lives in the ``imagine`` package (``python -m imagine`` is the same).
"""

import sys

from imagine.main import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m bot"))
