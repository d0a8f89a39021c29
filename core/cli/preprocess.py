"""`ckpt-studio check preprocess`: images through the declared preprocessing and the artefact's own
(recorded or baked), their output difference, and how much common mistakes move the outputs.

    ckpt-studio check preprocess model.onnx [--images FOLDER] [--preprocess SPEC]
                                 [--reference SRC --weights FILE] [--size HxW] [--json]

Exit status: 0 when the two pipelines agree, 1 when they differ, 2 on an error.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from core.errors import CheckFailed, CheckpointError

EXIT_OK, EXIT_FAILED = 0, 1


def add_check_parser(checks: Any) -> argparse.ArgumentParser:
    """Add `preprocess` to the `check` command's subparsers."""
    p = checks.add_parser("preprocess", help="compare the declared preprocessing with the artefact's "
                          "and rank which preprocessing mistakes the model would notice")
    p.add_argument("artefact", metavar="ARTEFACT", help="an ONNX, TorchScript or .pt2 file")
    p.add_argument("--images", metavar="FOLDER", help="a folder of images (needs Pillow); default: "
                   "generated images")
    p.add_argument("--count", type=int, default=16, help="at most this many images (default: "
                   "%(default)s)")
    p.add_argument("--preprocess", metavar="SPEC", help="the declared preprocessing (default: the "
                   "one recorded in the artefact), e.g. 'image: scale 1/255, mean 0.485,0.456,0.406, "
                   "std 0.229,0.224,0.225'")
    p.add_argument("--reference", metavar="SRC", help="the model taking normalised input "
                   "('file.py:build', 'pkg.mod:build' with --weights, or a file), e.g. the model the "
                   "artefact was exported from")
    p.add_argument("--weights", metavar="FILE", help="checkpoint for an architecture --reference")
    p.add_argument("--kwargs", metavar="JSON", help="keyword arguments for the architecture")
    p.add_argument("--size", metavar="HxW", help="the image size the model takes (default: from the "
                   "spec's crop/resize or the artefact's input)")
    p.add_argument("--atol", type=float, default=1e-4, help="allowed output difference (default: "
                   "%(default)s, plus 1e-4 of the largest output)")
    p.add_argument("--trust", action="store_true", help="allow loading TorchScript/.pt2/pickled "
                   "models, which runs code stored in those files")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=run_check_preprocess)
    return p


def run_check_preprocess(args: argparse.Namespace) -> int:
    from core.checks.preprocess import check_preprocess
    from core.checks.preprocess_pipeline import load_images
    from core.cli.progress import ProgressBar
    from core.runtime import build_runner

    declared = _declared(args.preprocess)
    recorded = _recorded(args.artefact)
    artefact = build_runner(args.artefact, args.trust)
    reference = build_runner(args.reference, args.trust, checkpoint=args.weights,
                             kwargs=_kwargs(args.kwargs), search_path=Path.cwd()) \
        if args.reference else None
    channels = (declared or recorded).channels if (declared or recorded) else 3
    images = load_images(args.images, channels, args.count) if args.images else None
    with ProgressBar("checking", enabled=not args.json) as bar:
        result = check_preprocess(artefact, declared, recorded, reference, images,
                                  _size(args.size), args.atol, progress=bar)
    if args.json:
        from core.report import to_json

        print(to_json(result))
    else:
        print(render(result))
    return EXIT_OK if result else EXIT_FAILED


def _declared(text: str | None) -> Any:
    from core.inputs.preprocess import parse_preprocess

    if not text:
        return None
    try:
        return parse_preprocess(text)
    except CheckpointError as exc:
        raise CheckFailed(exc.message, exc.details) from None


def _recorded(path: str) -> Any:
    """The spec recorded in the artefact, or None (also for files the readers do not open)."""
    from core.formats import open_checkpoint
    from core.inputs.preprocess import find_recorded

    if not Path(path).is_file():
        raise CheckFailed(f"The file '{path}' does not exist.")
    try:
        return find_recorded(open_checkpoint(path).metadata)
    except CheckpointError:
        return None


def _kwargs(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckFailed(f"--kwargs is not valid JSON: {exc.msg}.") from None


def _size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise CheckFailed(f"--size is HEIGHTxWIDTH, e.g. 224x224, not '{text}'.")
    return int(match[1]), int(match[2])


def render(result: Any) -> str:
    """Plain lines: the pipeline comparison, then the skews, most noticeable first."""
    declared = result.declared["text"]
    recorded = result.recorded["text"] if result.recorded else "none"
    baked = " (baked)" if result.recorded and result.recorded.get("baked") else ""
    verdict = "match" if result.passed else "DIFFER"
    lines = [f"declared: {declared}", f"artefact: {recorded}{baked}",
             f"{result.images} {result.image_source} image(s) at {result.target[0]}x{result.target[1]}: "
             f"pipelines {verdict} (max abs diff {result.max_abs_diff:.3g}, relative "
             f"{result.relative_diff:.3g}, allowed {result.tolerance:.3g})",
             "", "How much the outputs move under common mistakes (most noticeable first):",
             f"  {'mistake':<22} {'relative change':>15} {'max abs diff':>12} {'top-1 changed':>13}"]
    for s in result.skews:
        top1 = f"{s.top1_changed:.0%}" if s.top1_changed is not None else "-"
        lines.append(f"  {s.name:<22} {s.relative_change:>15.3g} {s.max_abs_diff:>12.3g} {top1:>13}")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)
