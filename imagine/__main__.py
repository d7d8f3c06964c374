"""``python -m imagine``: the whole service (Discord bot + engine + admin panel)."""

import sys

from imagine.main import main

if __name__ == "__main__":
    sys.exit(main())
