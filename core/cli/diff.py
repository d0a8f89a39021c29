"""`ckpt-studio diff`: argparse setup and the run function (wired in by `core.cli`).

Exit status: 0 when nothing differs (values identical or close when compared), 1 when something
differs, 2 on an error (the values of core.cli's EXIT_OK / EXIT_FINDINGS / EXIT_ERROR).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cli.progress import ProgressBar
from core.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from core.diff.structure import DiffResult
    from core.model import Checkpoint, TensorInfo

EXIT_OK, EXIT_DIFFERENT = 0, 1


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `diff` subcommand to `build_parser`'s subparsers."""
    p = sub.add_parser("diff", help="compare two checkpoints, or one against a model: keys, shapes, "
                       "dtypes, optionally values; suggest and apply key renames")
    p.add_argument("a", metavar="A", help="checkpoint (any format)")
    p.add_argument("b", metavar="B", nargs="?", help="checkpoint to compare with")
    p.add_argument("--model", metavar="SOURCE", help="compare A with what this model's "
                   "load_state_dict(strict=True) expects: 'package.module:callable' or "
                   "'file.py:callable' (built on the meta device when possible)")
    p.add_argument("--values", action="store_true", help="also compare tensor values (reads both)")
    p.add_argument("--atol", type=float, help="absolute tolerance for 'close' (default: by dtype)")
    p.add_argument("--rtol", type=float, help="relative tolerance for 'close' (default: by dtype)")
    p.add_argument("--section", metavar="NAME", help="section of both files (default: weights)")
    p.add_argument("--section-a", metavar="NAME", help="section of A")
    p.add_argument("--section-b", metavar="NAME", help="section of B")
    p.add_argument("--suggest-remap", action="store_true", help="suggest key renames that would "
                   "make A's keys match B's (or the model's)")
    p.add_argument("--apply-remap", metavar="OUT.safetensors", help="write A renamed by the "
                   "(unambiguous) suggestions, then diff the result again")
    p.add_argument("--ambiguous", action="store_true", help="with --apply-remap: also apply "
                   "suggestions marked ambiguous")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --apply-remap output")
    p.add_argument("--all-keys", action="store_true", help="also list the keys that are the same")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="rows per status (0 = all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(run=run_diff)
    return p


def run_diff(args: argparse.Namespace) -> int:
    from core.diff.structure import open_labelled

    if (args.b is None) == (args.model is None):
        raise CheckpointError("Give a second checkpoint B, or --model SOURCE to compare with a "
                              "model's keys (not both).")
    if args.values and args.model:
        raise CheckpointError("--values compares two files; a model built on the meta device "
                              "has no values.")
    a = open_labelled(args.a, "A")
    if args.b:
        b: Checkpoint | dict[str, TensorInfo] = open_labelled(args.b, "B")
    else:
        from core.diff.structure import model_keys

        b = model_keys(args.model, search_path=Path.cwd())
    with ProgressBar("comparing", enabled=(args.values or bool(args.apply_remap)) and not args.json) as bar:
        asked = args.suggest_remap or bool(args.apply_remap)
        result = _diff(a, b, args, asked, bar)
        if not asked:
            _tell_strong_suggestions(result, a, b)
        if not args.apply_remap:
            _print(result, args)
            return EXIT_OK if result else EXIT_DIFFERENT
        written, after = _apply(a, b, result, args, bar)
    if args.json:
        from core.report import to_json

        print(to_json(_Combined({"before": result.to_dict(), "written": written.to_dict(),
                                 "after": after.to_dict()})))
    else:
        from core.cli.convert import summary

        _print(result, args)
        print(summary(written))
        print("Diff of the renamed file:")
        _print(after, args)
    return EXIT_OK if after else EXIT_DIFFERENT


def _diff(a: Checkpoint, b: Checkpoint | dict[str, TensorInfo], args: argparse.Namespace,
          suggest: bool, progress: Any) -> DiffResult:
    """A vs the checkpoint B, or vs a model's expected keys (a dict)."""
    from core.diff.structure import diff_against_model, diff_checkpoints

    section_a = args.section_a or args.section
    if isinstance(b, dict):
        return diff_against_model(a, b, args.model, section=section_a, suggest=suggest)
    section_b = args.section_b or args.section
    return diff_checkpoints(a, b, section_a=section_a, section_b=section_b, values=args.values,
                            atol=args.atol, rtol=args.rtol, suggest=suggest, progress=progress)


def _tell_strong_suggestions(result: DiffResult, a: Checkpoint,
                             b: Checkpoint | dict[str, TensorInfo]) -> None:
    """Unasked, still show a rename that explains most of A's unmatched keys (a `module.` prefix,
    say); --suggest-remap lists every suggestion. Only sections with keys unmatched on both sides
    are searched, so identical key sets cost nothing."""
    from core.diff.remap import suggest_remap
    from core.diff.structure import ONLY_A, ONLY_B, section_tensors

    for section in result.sections:
        unmatched = len(section.with_status(ONLY_A))
        if not unmatched or not section.with_status(ONLY_B):
            continue
        tb = b if isinstance(b, dict) else section_tensors(b, section.section_b, "B")
        found = suggest_remap(section_tensors(a, section.section_a, "A"), tb)
        section.suggestions = [s for s in found if 2 * s.explains >= unmatched]


def _apply(a: Checkpoint, b: Checkpoint | dict[str, TensorInfo], result: DiffResult, args: argparse.Namespace,
           progress: Any) -> tuple[Any, DiffResult]:
    from core.diff.remap import rules_of, write_remapped
    from core.diff.structure import open_labelled

    rules = rules_of(result.suggestions, ambiguous=args.ambiguous)
    if not rules and any(s.ambiguous for s in result.suggestions):
        raise CheckpointError("Every remap suggestion is ambiguous; check them with "
                              "--suggest-remap and add --ambiguous to apply them anyway.")
    written = write_remapped(a, rules, args.apply_remap, section=result.sections[0].section_a,
                             overwrite=args.overwrite, progress=progress)
    out = open_labelled(written.outputs[-1]["path"], "written")
    args.section_a = args.section = None  # the written file holds only that section
    return written, _diff(out, b, args, suggest=True, progress=progress)


def _print(result: DiffResult, args: argparse.Namespace) -> None:
    if args.json:
        from core.report import to_json

        print(to_json(result))
        return
    from core.diff.render import print_diff

    print_diff(result, limit=args.limit, all_keys=args.all_keys)


class _Combined:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return self.data

