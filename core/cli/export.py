"""`ckpt-studio export`: argparse setup and the run function (wired in by `core.cli`).

    ckpt-studio export CKPT --arch SRC [--arch-kwargs JSON] [--input SPEC] --to onnx,torchscript,pt2
                       [--opset N] [--quantize dynamic-int8] --out-dir DIR [--trust] [--json]
    ckpt-studio export HF_FOLDER [--task TASK] [--pooling] --to onnx --out-dir DIR

Without --arch, a Hugging Face folder (or weights beside a config.json) is built from its config
(core.hf: task-aware inputs, the model's output names, strict loading by the class's rules);
otherwise CKPT itself must be a TorchScript file, a .pt2 program or a pickled model (--trust).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cli.progress import ProgressBar

if TYPE_CHECKING:  # pragma: no cover
    from core.arch import LoadReport
    from core.export import ExportResult
    from core.hf.model import HFModel

EXIT_OK, EXIT_ERROR = 0, 2  # the values of core.cli's EXIT_OK / EXIT_ERROR
TARGET_NAMES = ("onnx", "torchscript", "pt2", "aoti", "executorch")  # core.export.TARGETS, imported lazily
HF_TASKS = ("feature-extraction", "text-classification", "token-classification", "causal-lm",
            "image-classification")  # core.hf.config.TASKS


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `export` subcommand to `build_parser`'s subparsers."""
    p = sub.add_parser("export", help="export a checkpoint with its architecture to ONNX, "
                       "TorchScript or .pt2, each verified against the model")
    p.add_argument("checkpoint", metavar="CKPT", help="the weights (any format `inspect` reads)")
    p.add_argument("--arch", metavar="SRC", help="the architecture: package.module:callable, "
                   "file.py:callable, a Hugging Face model folder, or a TorchScript/.pt2/pickled "
                   "model file (needs --trust); default: CKPT itself is such a file")
    p.add_argument("--arch-kwargs", metavar="JSON", help="keyword arguments for the callable, "
                   "e.g. '{\"channels\": 8}'")
    p.add_argument("--arch-path", metavar="DIR", default=".", help="folder searched for the "
                   "--arch module after installed packages (default: the current folder)")
    p.add_argument("--trust", action="store_true", help="allow loading TorchScript, .pt2 or "
                   "pickled model files, which runs code stored in them")
    p.add_argument("--input", metavar="SPEC", help="inputs, e.g. 'x: float32[batch(1..64), 3, "
                   "224, 224]; mask: bool[batch, 16]' (default: guessed from the first layer)")
    p.add_argument("--preprocess", metavar="SPEC", help="how raw pixels become the input, recorded "
                   "in the artefacts, e.g. 'image: scale 1/255, mean 0.485,0.456,0.406, std 0.229,"
                   "0.224,0.225, layout nhwc, uint8' or 'text: tokenizer HF_FOLDER'")
    p.add_argument("--bake-preprocess", action="store_true", help="make the image preprocessing "
                   "(dtype, layout, scale, channel order, mean/std) the graph's first ops, so the "
                   "artefacts take raw pixels (resize and crop stay recorded only)")
    p.add_argument("--to", default="onnx", metavar="TARGETS",
                   help=f"comma-separated targets: {','.join(TARGET_NAMES)} (default onnx)")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="folder for the outputs")
    p.add_argument("--name", metavar="NAME", help="output file name stem (default: CKPT's)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the exporter's)")
    p.add_argument("--onnx-exporter", choices=["auto", "dynamo", "legacy"],
                   help="auto (the default): torch.export-based, the legacy exporter if that "
                   "fails; Hugging Face folders default to legacy (as Optimum does, ~10x faster), "
                   "checked against the model at two shapes")
    p.add_argument("--optimize", action="store_true", help="save the ONNX graph as optimised by "
                   "onnxruntime (basic, portable level)")
    p.add_argument("--torchscript", choices=["trace", "script"], default="trace",
                   help="how to make TorchScript (default trace)")
    p.add_argument("--quantize", choices=["dynamic-int8"], help="also write int8 TorchScript/ONNX "
                   "artefacts (Linear/LSTM weights in int8)")
    p.add_argument("--task", choices=HF_TASKS, help="Hugging Face folders: what to export the model "
                   "for (default: from config.json's architectures)")
    p.add_argument("--pooling", action="store_true", help="sentence-transformers folders: put the "
                   "pooling (and normalisation) of modules.json inside the graph")
    p.add_argument("--section", metavar="NAME", help="weights section to load (model, ema, ...)")
    p.add_argument("--non-strict", action="store_true", help="export even when some weights are "
                   "missing, unexpected or mis-shaped")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    p.set_defaults(run=run_export)
    return p


def run_export(args: argparse.Namespace) -> int:
    from core.export import ExportOptions, export
    from core.inputs import format_specs, infer_spec, parse_specs
    from core.inputs.preprocess import parse_preprocess

    preprocess = parse_preprocess(args.preprocess) if args.preprocess else None  # fail before loading
    hf = _hf_model(args)
    model, report = (hf.module, hf.report) if hf else _model(args)
    specs = parse_specs(args.input) if args.input else hf.specs if hf else infer_spec(model)
    options = (hf.export_options if hf else ExportOptions)(
        name=args.name or _stem(args.checkpoint), opset=args.opset,
        onnx_exporter=args.onnx_exporter or ("legacy" if hf else "auto"),
        ort_optimize=args.optimize, torchscript_mode=args.torchscript, quantize=args.quantize,
        overwrite=args.overwrite, keep_going=True, protect=(Path(args.checkpoint),),
        preprocess=preprocess, bake_preprocess=args.bake_preprocess)
    targets = [t.strip() for t in args.to.split(",") if t.strip()]
    with ProgressBar("exporting", enabled=not args.json) as progress:
        results = export(model, specs, targets, args.out_dir, options, progress)
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "arch": args.arch or args.checkpoint,
                          "hf": hf.to_dict() if hf else None,
                          "weights": report.to_dict() if report else None,
                          "inputs": format_specs(specs),
                          "results": [r.to_dict() for r in results]}, indent=2, default=str))
    else:
        head = f"model: {hf.model_class} ({hf.task})" + "".join(f"; {n}" for n in hf.notes) \
            if hf else ""
        print((head + "\n" if head else "") + summary(results, report, format_specs(specs),
                                                      args.verbose))
    return EXIT_OK if all(r.ok for r in results) else EXIT_ERROR


def _stem(checkpoint: str) -> str:
    path = Path(checkpoint)
    return (path.resolve().name if path.is_dir() else path.name.split(".")[0]) or "model"


def _hf_model(args: argparse.Namespace) -> HFModel | None:
    """The Hugging Face path: no --arch (or --arch naming a model folder) and a config.json."""
    from core.errors import ExportError
    from core.hf.config import model_folder
    from core.hf.model import load_hf_model

    arch_folder = model_folder(args.arch) if args.arch and Path(args.arch).is_dir() else None
    if args.arch and arch_folder is None:
        if args.task or args.pooling:
            raise ExportError("--task and --pooling apply to Hugging Face folders, not to --arch "
                              "code.")
        return None
    if arch_folder is None and model_folder(args.checkpoint) is None:
        if Path(args.checkpoint).is_dir():
            raise ExportError(f"The folder '{args.checkpoint}' has no config.json, so its "
                              "architecture is unknown; give it with --arch.")
        return None
    weights = args.checkpoint if arch_folder is not None else None
    return load_hf_model(arch_folder or args.checkpoint, args.task, pooling=args.pooling,
                         weights=weights, strict=not args.non_strict)


def _model(args: argparse.Namespace) -> tuple[Any, LoadReport | None]:
    from core.arch import load_program
    from core.build import build_model, parse_kwargs

    if not args.arch:
        return load_program(Path(args.checkpoint), trust=args.trust), None
    return build_model(args.arch, args.checkpoint, kwargs=parse_kwargs(args.arch_kwargs),
                       trust=args.trust, section=args.section, search_path=args.arch_path,
                       strict=not args.non_strict)


def summary(results: list[ExportResult], report: LoadReport | None, inputs: str,
            verbose: bool = False) -> str:
    """A few plain lines per artefact."""
    from core.report import human_bytes

    lines = []
    if report is not None:
        lines.append("weights: " + report.summary().replace("\n", "\n  "))
    lines.append(f"inputs: {inputs}")
    for r in results:
        label = r.target + (f" ({r.quantized})" if r.quantized else "")
        if not r.ok and r.error:
            lines.append(f"{label}: FAILED - {r.error['message']}")
            if verbose and r.error.get("details"):
                lines.append("  " + str(r.error["details"]).replace("\n", "\n  "))
            continue
        how = r.exporter + (f", opset {r.opset}" if r.opset else "")
        lines.append(f"{label}: {r.path} ({human_bytes(r.size)}, {how}, {r.seconds:.1f} s)")
        lines += [f"  checked at {c['inputs']}: max abs diff {c['max_abs_diff']:.3g}"
                  for c in r.checked_shapes[1:]]
        lines.append(f"  max abs diff vs {r.reference}: {r.max_abs_diff:.3g}"
                     + (f"; vs the float model: {r.quantization_error:.3g}"
                        if r.quantization_error is not None else ""))
        lines += [f"  warning: {w}" for w in r.warnings]
    record = next((r.preprocess for r in results if r.preprocess), None)
    if record:
        lines.append(f"preprocessing recorded in the artefacts: {record['text']}")
        if record.get("baked"):
            lines.append(f"  baked in: the artefacts take raw pixels ({record['raw_inputs']})")
    return "\n".join(lines)

