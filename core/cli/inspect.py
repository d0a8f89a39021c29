"""`ckpt-studio inspect`: every tensor's name, shape, dtype, size and role, grouped by section."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_OK = 0  # the value of core.cli.main's EXIT_OK


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="list a file's tensors: names, shapes, dtypes, sizes")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--filter", metavar="TEXT", help="only tensors whose name contains TEXT (any "
                   "case), or matches it as a glob when it has * ? or [, e.g. 'bn' or '*.bn.*'")
    p.add_argument("--section", metavar="NAME", help="only this section (model, ema, optimizer...)")
    p.set_defaults(run=run_inspect)
    return p


def run_inspect(args: argparse.Namespace) -> int:
    from core.formats import open_checkpoint
    from core.inspect import inspect_checkpoint

    result = inspect_checkpoint(open_checkpoint(args.file), args.section, args.filter)
    if args.json:
        from core.report import to_json

        print(to_json(result))
    else:
        from core.cli.render import print_inspect

        print_inspect(result)
        if result.preprocess:
            print(preprocess_line(result.preprocess))
    return EXIT_OK


def preprocess_line(record: dict[str, Any]) -> str:
    """'Preprocessing (baked into the graph): image: scale 1/255, ...' for a recorded spec."""
    how = "baked into the graph: it takes raw pixels" if record.get("baked") else \
        "recorded; apply it before feeding the model"
    return f"Preprocessing ({how}): {record['text']}"
