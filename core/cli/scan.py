"""`ckpt-studio scan`: the code references in a file; exit 1 when torch.load(weights_only=True)
would refuse it."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_OK, EXIT_FINDINGS = 0, 1  # the values of core.cli.main's EXIT_OK / EXIT_FINDINGS


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("scan", help="report code references; exit 1 if torch.load("
                       "weights_only=True) would refuse the file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=run_scan)
    return p


def run_scan(args: argparse.Namespace) -> int:
    from core.formats import open_checkpoint
    from core.scan import scan_checkpoint

    result = scan_checkpoint(open_checkpoint(args.file))
    if args.json:
        from core.report import to_json

        print(to_json(result))
    else:
        from core.cli.render import print_scan

        print_scan(result)
    return EXIT_FINDINGS if result.refused_by_weights_only else EXIT_OK
