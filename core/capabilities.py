"""What this installation can do: library versions, ONNX Runtime providers, the C++ compiler, CUDA,
and which export targets and runners work here, each with the reason (and the remedy) when not.

    report = capabilities()          # a plain dict, the same for `ckpt-studio doctor` and the app

Versions come from the installed packages' metadata; torch, onnxruntime and executorch are imported
only here, inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

PACKAGES = ("torch", "onnx", "onnxscript", "onnxruntime", "executorch", "transformers", "gguf",
            "safetensors", "numpy")
EXECUTORCH_EXTRA = "pip install 'checkpoint-studio[executorch]'"


@dataclass
class Capability:
    name: str
    kind: str  # "target" (export --to NAME) | "runner" (check parity/latency on such a file)
    available: bool
    reason: str | None = None  # why not, in one sentence with the remedy; None when available


def package_version(name: str) -> str | None:
    """The installed version of `name`, or None when it is not importable here."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return getattr(importlib.import_module(name), "__version__", "unknown")


def compiler_problem() -> str | None:
    """Why AOTInductor and torch.compile cannot build code here, or None when they can."""
    from core.runtime.compiled import missing_toolchain

    return missing_toolchain()


def executorch_problem() -> str | None:
    """Why the ExecuTorch export target cannot work here, or None when it can."""
    if package_version("executorch") is None:
        return f"the executorch package is not installed ({EXECUTORCH_EXTRA})"
    from core.export.common import quiet  # torchao, which executorch loads, logs and prints

    try:
        with quiet():
            importlib.import_module("executorch.exir")
            importlib.import_module("executorch.backends.xnnpack.partition.xnnpack_partitioner")
    except Exception as exc:  # a wheel built for another torch fails here, in many ways
        return (f"the installed executorch does not work with this torch ({type(exc).__name__}); "
                "install the version the executorch extra pins")
    return None


def executorch_runtime_problem() -> str | None:
    """Why .pte files cannot be run here, or None when they can."""
    if package_version("executorch") is None:
        return f"the executorch package is not installed ({EXECUTORCH_EXTRA})"
    from core.export.common import quiet

    try:
        with quiet():
            importlib.import_module("executorch.runtime")
    except Exception as exc:
        return f"the executorch runtime does not load here ({type(exc).__name__})"
    return None


def _onnx_problem() -> str | None:
    if package_version("onnx") is None:
        return "the onnx package is not installed (pip install onnx)"
    return None


def _ort_problem() -> str | None:
    if package_version("onnxruntime") is None:
        return "onnxruntime is not installed (pip install onnxruntime)"
    return None


def _torch_problem() -> str | None:
    return None if package_version("torch") is not None else \
        "PyTorch is not installed (pip install torch)"


def _first(*checks: Any) -> str | None:
    for check in checks:
        problem = check()
        if problem:
            return problem
    return None


def targets_and_runners() -> list[Capability]:
    """Every export target and runner with whether it works here and, if not, why."""
    compiler = _first(_torch_problem, compiler_problem)
    checks = {
        ("onnx", "target"): _first(_torch_problem, _onnx_problem),
        ("torchscript", "target"): _first(_torch_problem),
        ("pt2", "target"): _first(_torch_problem),
        ("aoti", "target"): compiler and f"AOTInductor needs a C++ compiler, but {compiler}",
        ("executorch", "target"): _first(_torch_problem, executorch_problem),
        ("eager", "runner"): _first(_torch_problem),
        ("compiled", "runner"): compiler and f"Compiling with torch.compile needs a C++ compiler, "
                                             f"but {compiler}",
        ("torchscript", "runner"): _first(_torch_problem),
        ("pt2", "runner"): _first(_torch_problem),
        ("aoti", "runner"): _first(_torch_problem),
        ("onnxruntime", "runner"): _first(_ort_problem),
        ("executorch", "runner"): _first(executorch_runtime_problem),
    }
    return [Capability(name, kind, problem is None, _sentence(problem))
            for (name, kind), problem in checks.items()]


def _sentence(problem: str | None) -> str | None:
    if not problem:
        return None
    text = problem[0].upper() + problem[1:]
    return text if text.endswith(".") else text + "."


def _providers() -> list[str]:
    if _ort_problem():
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def _cuda() -> bool:
    if _torch_problem():
        return False
    import torch

    return bool(torch.cuda.is_available())


def capabilities() -> dict[str, Any]:
    """The whole report as plain data (what `doctor --json` prints)."""
    compiler = compiler_problem()
    found = targets_and_runners()
    return {
        "versions": {name: package_version(name) for name in PACKAGES},
        "onnxruntime_providers": _providers(),
        "cuda": _cuda(),
        "compiler": {"available": compiler is None, "reason": _sentence(compiler)},
        "targets": [asdict(c) for c in found if c.kind == "target"],
        "runners": [asdict(c) for c in found if c.kind == "runner"],
    }


def render(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    lines = ["versions:"]
    lines += [f"  {name:<13} {version or 'not installed'}"
              for name, version in report["versions"].items()]
    lines.append(f"ONNX Runtime providers: {', '.join(report['onnxruntime_providers']) or 'none'}")
    lines.append(f"CUDA: {'available' if report['cuda'] else 'not available'}")
    compiler = report["compiler"]
    lines.append(f"C++ compiler: {'found' if compiler['available'] else compiler['reason']}")
    for title, key in (("export targets (--to)", "targets"), ("runners (check)", "runners")):
        lines.append(f"{title}:")
        lines += [f"  {c['name']:<12} {'yes' if c['available'] else 'no: ' + c['reason']}"
                  for c in report[key]]
    return "\n".join(lines)
