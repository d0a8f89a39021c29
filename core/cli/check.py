"""`ckpt-studio check parity|latency`: argparse setup and run functions (wired in by `core.cli`).

Exit status: 0 when parity passes / every latency run worked, 1 when parity fails / some batch
failed, 2 on an error (core.cli's EXIT_OK / EXIT_FINDINGS / EXIT_ERROR).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.checks.preprocess_parity import for_baked_candidate
from core.cli.preprocess import add_check_parser
from core.cli.progress import ProgressBar
from core.errors import CheckFailed
from core.files import write_text

EXIT_OK, EXIT_FAILED = 0, 1
SOURCE_HELP = ("an ONNX, TorchScript or .pt2 file (detected by content), or an architecture "
               "('pkg.module:build', 'file.py:build', a Hugging Face folder) used with --weights")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `check` command (with `parity` and `latency`) to `build_parser`'s subparsers."""
    p = sub.add_parser("check", help="run models: parity between two artefacts, latency")
    checks = p.add_subparsers(dest="check", metavar="CHECK", required=True)
    par = checks.add_parser("parity", help="compare two models' outputs over several input shapes")
    par.add_argument("a", metavar="A", help="reference: " + SOURCE_HELP)
    par.add_argument("b", metavar="B", help="candidate: same kinds as A")
    par.add_argument("--atol", type=float, help="absolute tolerance (default: by output dtype)")
    par.add_argument("--rtol", type=float, help="relative tolerance (default: by output dtype)")
    par.add_argument("--tol", action="append", default=[], metavar="OUTPUT=ATOL,RTOL",
                     help="tolerance for one output (repeatable)")
    par.add_argument("--shapes", nargs="+", metavar="DIM=N[,DIM=N]", help="sizes to test, e.g. "
                     "batch=1 batch=16 (default: 1, 16, 64 and the min/max of each dynamic dim)")
    par.add_argument("--inputs-npz", nargs="+", metavar="FILE", help="test these inputs instead "
                     "(one case per .npz; a saved failing case works too)")
    par.add_argument("--save-dir", default="parity-failures", metavar="DIR",
                     help="where failing cases are saved as .npz (default: %(default)s)")
    par.add_argument("--locate", action="store_true", help="also compare every module's output "
                     "on the first failing input, and name the first module out of tolerance")
    par.set_defaults(run=run_parity)
    lat = checks.add_parser("latency", help="time one or more models at several batch sizes")
    lat.add_argument("sources", nargs="+", metavar="MODEL", help=SOURCE_HELP)
    lat.add_argument("--batches", default="1,16,64", help="batch sizes (default: %(default)s)")
    lat.add_argument("--batch-dim", metavar="NAME", help="the dim that is the batch size "
                     "(default: 'batch', else the first dynamic dim)")
    lat.add_argument("--runs", type=int, default=100, help="timed runs (default: %(default)s)")
    lat.add_argument("--warmup", type=int, default=10, help="untimed runs first (default: "
                     "%(default)s)")
    lat.add_argument("--budget", type=float, metavar="SECONDS", help="stop timing a batch after "
                     "this long (at most --runs runs)")
    lat.add_argument("--threads", type=int, help="intra-op threads (default: the runtime's own)")
    lat.add_argument("--compile", action="store_true", help="wrap architecture models in "
                     "torch.compile")
    lat.set_defaults(run=run_latency)
    for q in (par, lat):
        q.add_argument("--input", metavar="SPEC", help="inputs, e.g. 'x: float32[batch(1..64), 3, "
                       "224, 224]' (default: an ONNX model's declared inputs)")
        q.add_argument("--trust", action="store_true", help="allow loading TorchScript/.pt2/"
                       "pickled models, which runs code stored in those files")
        q.add_argument("--weights", metavar="FILE", help="checkpoint to load into architecture "
                       "sources")
        q.add_argument("--kwargs", metavar="JSON", help="keyword arguments for the architecture")
        q.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
        q.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
        q.add_argument("--json", action="store_true", help="print JSON instead of tables")
        q.add_argument("--report", metavar="FILE", help="also write a report (.html or .md)")
    add_check_parser(checks)
    return p


REPORT_SUFFIXES = (".html", ".htm", ".md")


def _check_report_path(report: str | None) -> None:
    """Refuse a report name we would not write as named, before any model runs."""
    if report and Path(report).suffix.lower() not in REPORT_SUFFIXES:
        raise CheckFailed(f"--report writes an HTML (.html) or Markdown (.md) file; '{report}' has "
                          "another extension. Name it e.g. 'report.html'.")


def run_parity(args: argparse.Namespace) -> int:
    from core.checks.common import load_cases

    _check_report_path(args.report)
    from core.checks.parity import check_parity, parse_tolerances

    cases = load_cases(args.inputs_npz) if args.inputs_npz else None
    reference, candidate = (_runner(s, args) for s in (args.a, args.b))
    reference = for_baked_candidate(reference, candidate, args.a, args.b)  # raw pixels to both
    with ProgressBar("checking", enabled=not args.json) as bar:
        result = check_parity(reference, candidate, args.input, points=_points(args.shapes),
                              cases=cases, atol=args.atol, rtol=args.rtol,
                              tolerances=parse_tolerances(args.tol), seed=args.seed,
                              save_dir=args.save_dir, progress=bar)
        if args.locate:
            _locate(result, reference, candidate, cases, args, bar)
    _show(result, args)
    return EXIT_OK if result else EXIT_FAILED


def _locate(result: Any, reference: Any, candidate: Any, cases: list[Any] | None,
            args: argparse.Namespace, bar: Any) -> None:
    """Locate on the first failing input shape (the first one when all pass); a model that cannot
    be looked inside becomes a note, the parity result stands."""
    from core.checks.locate import locate

    index = next((i for i, c in enumerate(result.cases) if not c.passed), 0)
    s = result.settings
    try:
        if cases:
            loc = locate(reference, candidate, inputs=cases[index], atol=s["atol"],
                         rtol=s["rtol"], progress=bar)
        else:
            loc = locate(reference, candidate, args.input, point=result.cases[index].sizes,
                         atol=s["atol"], rtol=s["rtol"], seed=args.seed, progress=bar)
    except CheckFailed as exc:
        result.notes.append(f"Where the models diverge could not be located: {exc.message}")
        return
    result.localisation = loc.to_json()


def run_latency(args: argparse.Namespace) -> int:
    from core.checks.latency import measure_latency

    _check_report_path(args.report)
    runners = [_runner(s, args) for s in args.sources]
    with ProgressBar("checking", enabled=not args.json) as bar:
        result = measure_latency(runners, args.input, _batches(args.batches), warmup=args.warmup,
                                 runs=args.runs, budget_s=args.budget, seed=args.seed,
                                 batch_dim=args.batch_dim, progress=bar)
    _show(result, args)
    return EXIT_OK if result else EXIT_FAILED


def _runner(source: str, args: argparse.Namespace) -> Any:
    from core.runtime import build_runner

    is_file = Path(source).is_file()
    kwargs = None
    if args.kwargs:
        try:
            kwargs = json.loads(args.kwargs)
        except json.JSONDecodeError as exc:
            raise CheckFailed(f"--kwargs is not valid JSON: {exc.msg}.") from None
    return build_runner(source, args.trust, checkpoint=None if is_file else args.weights,
                        kwargs=kwargs, compiled=getattr(args, "compile", False),
                        device=args.device, threads=getattr(args, "threads", None),
                        search_path=Path.cwd())


def _points(texts: list[str] | None) -> list[dict[str, int]] | None:
    if not texts:
        return None
    points = []
    for text in texts:
        point = {}
        for part in filter(None, text.split(",")):
            name, _, size = part.partition("=")
            if not name.strip() or not size.strip().isdigit():
                raise CheckFailed(f"'{text}' is not a shape to test; write it like 'batch=16' or "
                                  "'batch=16,seq=128'.")
            point[name.strip()] = int(size)
        points.append(point)
    return points


def _batches(text: str) -> list[int]:
    try:
        sizes = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise CheckFailed(f"'{text}' is not a list of batch sizes; write it like '1,16,64'.")
    return sizes


def _show(result: Any, args: argparse.Namespace) -> None:
    from core.report.checks import render_html, render_markdown

    if args.report:
        path = Path(args.report)
        text = render_markdown(result) if path.suffix.lower() == ".md" else render_html(result)
        write_text(path, text)
    if args.json:
        from core.report import to_json

        print(to_json(result))
        return
    if sys.stdout.isatty():
        from core.cli.render import print_check

        print_check(result)
    else:  # piped: Markdown, ready to paste
        print(render_markdown(result))
    if args.report:
        print(f"Report written to {args.report}")
