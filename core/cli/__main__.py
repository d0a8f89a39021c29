"""`python -m core.cli` runs `ckpt-studio`."""

import sys

from core.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
