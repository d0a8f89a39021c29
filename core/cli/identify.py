"""`ckpt-studio identify FILE_OR_FOLDER [--json]`: what a checkpoint is, with the evidence
(core.hf.identify). Exit status 0 when it was recognised, 1 when not (core.cli's EXIT_FINDINGS)."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_OK, EXIT_NOT_RECOGNISED = 0, 1


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `identify` subcommand to `build_parser`'s subparsers."""
    p = sub.add_parser("identify", help="say what model a checkpoint or model folder is, from its "
                       "config or its tensor names and shapes")
    p.add_argument("path", metavar="FILE_OR_FOLDER")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=run_identify)
    return p


def run_identify(args: argparse.Namespace) -> int:
    from core.hf.identify import identify, render

    result = identify(args.path)
    if args.json:
        from core.report import to_json

        print(to_json(result))
    else:
        print(render(result))
    return EXIT_OK if result.recognised else EXIT_NOT_RECOGNISED
