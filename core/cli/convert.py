"""`ckpt-studio convert`: argparse setup and the run function (wired in by `core.cli`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cli.progress import ProgressBar
from core.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from core.convert import BatchResult, ConvertOptions, ConvertResult

EXIT_OK, EXIT_ERROR = 0, 2  # the values of core.cli's EXIT_OK / EXIT_ERROR
TARGET_NAMES = ("safetensors", "safetensors-sharded", "pt")  # core.convert.TARGETS, imported lazily
FILE_TARGETS = {".safetensors": "safetensors", ".pt": "pt", ".pth": "pt", ".bin": "pt", ".ckpt": "pt"}
TARGET_SUFFIX = {"safetensors": ".safetensors", "pt": ".pt"}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `convert` subcommand to `build_parser`'s subparsers."""
    p = sub.add_parser("convert", help="convert checkpoints (safetensors, sharded safetensors, .pt) "
                       "with streaming, an atomic write and verification")
    p.add_argument("files", nargs="+", metavar="FILE", help="checkpoint(s) to convert")
    p.add_argument("--to", choices=TARGET_NAMES, help="output format (default: from the -o "
                   "extension, .pt/.pth/.bin/.ckpt -> pt; safetensors-sharded with "
                   "--max-shard-size; else safetensors)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="PATH",
                     help="output file (a folder for safetensors-sharded); one input only")
    out.add_argument("--out-dir", metavar="DIR", help="folder for the outputs, created if missing "
                     "(default: beside each input, named after it)")
    p.add_argument("--section", metavar="NAME", help="section to write (model, ema, ...; default: "
                   "the detected weights)")
    p.add_argument("--keep-training", action="store_true", help="also write optimizer/scheduler "
                   "and other sections' tensors (names prefixed by their key in the file)")
    p.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], help="cast floating tensors; "
                   "integer and bool tensors (num_batches_tracked) are kept as they are")
    p.add_argument("--allow-overflow", action="store_true", help="cast to fp16 even when values "
                   "larger than 65504 would become infinity (refused otherwise; the summary counts them)")
    p.add_argument("--strip-prefix", action="append", default=[], metavar="PREFIX",
                   help="remove this prefix from names, e.g. 'module.' (repeatable)")
    p.add_argument("--add-prefix", default="", metavar="PREFIX", help="prepend this to every name")
    p.add_argument("--rename", action="append", default=[], metavar="'REGEX=>REPLACEMENT'",
                   help="rename with a regular expression (repeatable); refused if two names "
                   "would collide")
    p.add_argument("--keep", action="append", default=[], metavar="GLOB",
                   help="write only tensors whose name in the source matches (repeatable)")
    p.add_argument("--drop", action="append", default=[], metavar="GLOB",
                   help="leave out tensors whose name in the source matches (repeatable)")
    p.add_argument("--max-shard-size", metavar="SIZE", help="data per shard, e.g. 2GB, 500MB "
                   "(default 5GB); implies --to safetensors-sharded")
    p.add_argument("--hf-names", action="store_true",
                   help="GGUF: name tensors as Hugging Face does (blk.0.attn_q.weight -> "
                        "model.layers.0.self_attn.q_proj.weight) where the gguf package knows it")
    p.add_argument("--source-sha256", action="store_true",
                   help="identify the source by its sha256 (as the Hugging Face Hub shows it) "
                        "instead of its BLAKE3; costs ~0.6 s more per GB")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    p.set_defaults(run=run_convert)
    return p


def options_from(args: argparse.Namespace) -> ConvertOptions:
    from core.convert import ConvertOptions

    return ConvertOptions(
        section=args.section, keep_training=args.keep_training, dtype=args.dtype,
        strip_prefix=tuple(args.strip_prefix), add_prefix=args.add_prefix,
        rename=tuple(args.rename), keep=tuple(args.keep), drop=tuple(args.drop),
        hf_names=args.hf_names)


def run_convert(args: argparse.Namespace) -> int:
    from core.convert import BatchResult, convert, convert_many, default_destination
    from core.convert.safetensors_sharded import parse_size

    if args.output and len(args.files) > 1:
        raise CheckpointError("--output names one output; with several inputs use --out-dir.")
    if args.allow_overflow and args.dtype not in ("fp16", "bf16"):
        raise CheckpointError("--allow-overflow only applies to a cast to 16 bits; add --dtype fp16 "
                              "(or bf16), or leave it out.")
    shard = parse_size(args.max_shard_size) if args.max_shard_size else None
    target = chosen_target(args)
    common = {"overwrite": args.overwrite, "max_shard_size": shard,
              "allow_overflow": args.allow_overflow,
              "source_hash": "sha256" if args.source_sha256 else "blake3"}
    with ProgressBar("converting", enabled=not args.json) as progress:
        if len(args.files) == 1:
            dest = args.output or default_destination(args.files[0], target, args.out_dir)
            result = convert(args.files[0], dest, target, options_from(args), progress=progress,
                             create_folders=args.out_dir is not None, **common)
            batch = BatchResult([result], [])
        else:
            batch = convert_many(args.files, args.out_dir, target, options_from(args),
                                 progress=progress, **common)
    _print(batch, args)
    return EXIT_ERROR if batch.errors else EXIT_OK


def chosen_target(args: argparse.Namespace) -> str:
    """--to, or what -o's extension / --max-shard-size imply; refuses options that disagree."""
    sharded = "safetensors-sharded"
    output = Path(args.output) if args.output else Path()
    implied = FILE_TARGETS.get(output.suffix.lower())
    target = args.to or (sharded if args.max_shard_size else implied or "safetensors")
    if args.max_shard_size and target != sharded:
        raise CheckpointError(f"--max-shard-size only applies to sharded output, and --to {target} "
                              f"writes one file; use --to {sharded} (or leave --to out).")
    if target == sharded and implied:
        asked = f"--to {sharded}" if args.to else "--max-shard-size (sharded output)"
        raise CheckpointError(f"{asked} writes a folder of shards, but '{output.name}' is a file "
                              f"name; name a folder, e.g. -o {output.with_suffix('')}.")
    if implied and implied != target:
        raise CheckpointError(f"'{output.name}' is a {implied} file name, but --to {target} was "
                              f"asked; name it '{output.stem}{TARGET_SUFFIX[target]}' or use "
                              f"--to {implied}.")
    return target


def _print(batch: BatchResult, args: argparse.Namespace) -> None:
    if args.json:
        from core.report import to_json

        print(to_json(batch.results[0] if len(args.files) == 1 else batch))
        return
    for result in batch.results:
        print(summary(result))
    for error in batch.errors:
        print(f"Error: {error['source']}: {error['message']}", file=sys.stderr)
        if args.verbose and error.get("details"):
            print(error["details"], file=sys.stderr)


def summary(result: ConvertResult) -> str:
    """A few plain lines about one conversion."""
    from core.report import human_bytes

    size = sum(o["size"] for o in result.outputs)
    where = result.outputs[-1]["path"] if len(result.outputs) == 1 else \
        f"{len(result.outputs) - 1} shards + index in {Path(result.outputs[0]['path']).parent}"
    lines = [f"{result.source} -> {where} ({human_bytes(size)}, {result.seconds:.2f} s)",
             f"  {result.tensors_written} tensors written, verified ({result.verification['method']})",
             f"  source {result.source_hash['algorithm']}: {result.source_hash['digest']}"]
    if result.aliases:
        lines.append(f"  {len(result.aliases)} tied tensor(s) written once: "
                     + ", ".join(f"{a} = {t}" for a, t in list(result.aliases.items())[:3]))
    if result.dtype_changes:
        lines.append(f"  {len(result.dtype_changes)} tensor(s) cast")
    if result.precision:
        lines.append("  " + precision_line(result.precision))
    if result.renamed:
        lines.append(f"  {len(result.renamed)} tensor(s) renamed")
    if result.dropped or result.dropped_sections:
        parts = [f"{n} tensors of section '{s}'" for s, n in result.dropped_sections.items()]
        parts += [f"{len(result.dropped)} tensor(s) by keep/drop rules"] if result.dropped else []
        lines.append("  left out: " + ", ".join(parts))
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)



def precision_line(report: dict[str, Any]) -> str:
    """What the cast did to the values, in one line: overflow, flush to zero, rounding error."""
    totals = report["totals"]
    return (f"cast to {report['dtype']}: {totals['overflow']:,} value(s) became infinity, "
            f"{totals['flushed']:,} became zero, {totals['subnormal']:,} subnormal; relative "
            f"rounding error max {totals['max_rel_error']:.2g}, mean {totals['mean_rel_error']:.2g}")
