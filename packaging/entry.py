"""The frozen app's entry point: the same `ckpt-studio` command as the installed package."""

from __future__ import annotations

import multiprocessing
import sys

from core.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
