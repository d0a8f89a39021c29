"""`ckpt-studio doctor [--json]`: what this installation can do (core.capabilities): library
versions, ONNX Runtime providers, the C++ compiler, CUDA, and which export targets and runners work
here, with the reason and the remedy for each one that does not. Fast by default: `--probe` also
imports ExecuTorch, which takes 10 to 40 seconds."""

from __future__ import annotations

import argparse
import json
from typing import Any

EXIT_OK = 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `doctor` subcommand to `build_parser`'s subparsers."""
    p = sub.add_parser("doctor", help="report which export targets and runners work on this "
                       "machine, and why not for those that don't")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--probe", action="store_true",
                   help="import ExecuTorch's exporter and runtime instead of judging them by their "
                        "installed files (10 to 40 s)")
    p.set_defaults(run=run_doctor)
    return p


def run_doctor(args: argparse.Namespace) -> int:
    from core.capabilities import capabilities, render

    report = capabilities(probe=args.probe)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return EXIT_OK
