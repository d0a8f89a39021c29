"""What this installation can do: library versions, ONNX Runtime providers, the C++ compiler, CUDA,
and which export targets and runners work here, each with the reason (and the remedy) when not.

    report = capabilities()            # a plain dict, the same for `ckpt-studio doctor` and the app
    report = capabilities(probe=True)  # also import executorch and PyTorch's AOTInductor loader

Versions come from the installed packages' metadata. Importing executorch's exporter takes 10 to
40 seconds (it loads torch._dynamo and torchao), so by default ExecuTorch is judged by its installed
files: the package, its XNNPACK partitioner and a runtime library built for this Python. The report
says so (`probed`); with probe=True (`doctor --probe`) it imports them, as the export target and the
runner always do before they start.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "onnx", "onnxscript", "onnxruntime", "executorch", "transformers", "gguf",
            "safetensors", "numpy")
EXECUTORCH_EXTRA = "pip install 'checkpoint-studio[executorch]'"
# Files (inside the executorch package) each part needs; the runtime's is a native library.
EXECUTORCH_EXPORT_FILES = ("exir/__init__.py", "backends/xnnpack/partition/xnnpack_partitioner.py")
EXECUTORCH_RUNTIME_FILES = ("runtime/__init__.py", "extension/pybindings/_C")
# Loading an AOTInductor package imports torch.utils.cpp_extension (PyTorch checks the CPU's vector
# extensions on the way), which imports these; the frozen app left setuptools out.
AOTI_LOADER_MODULES = ("setuptools", "packaging.version", "packaging.utils")
NOT_PROBED = ("ExecuTorch was judged by its installed files, not imported (that takes 10 to 40 s); "
              "`ckpt-studio doctor --probe` imports its exporter and runtime.")


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


def executorch_problem(probe: bool = True) -> str | None:
    """Why the ExecuTorch export target cannot work here, or None when it can; probe=False judges
    by the installed files only (fast), probe=True also imports the exporter (10 to 40 s)."""
    problem = _executorch_files_problem(EXECUTORCH_EXPORT_FILES)
    if problem or not probe:
        return problem
    from core.export.common import quiet  # torchao, which executorch loads, logs and prints

    try:
        with quiet():
            importlib.import_module("executorch.exir")
            importlib.import_module("executorch.backends.xnnpack.partition.xnnpack_partitioner")
    except Exception as exc:  # a wheel built for another torch fails here, in many ways
        return (f"the installed executorch does not work with this torch ({type(exc).__name__}); "
                "install the version the executorch extra pins")
    return None


def executorch_runtime_problem(probe: bool = True) -> str | None:
    """Why .pte files cannot be run here, or None when they can (probe as in executorch_problem)."""
    problem = _executorch_files_problem(EXECUTORCH_RUNTIME_FILES)
    if problem or not probe:
        return problem
    from core.export.common import quiet

    try:
        with quiet():
            importlib.import_module("executorch.runtime")
    except Exception as exc:
        return f"the executorch runtime does not load here ({type(exc).__name__})"
    return None


def aoti_runtime_problem(probe: bool = True) -> str | None:
    """Why AOTInductor packages cannot be loaded here, or None when they can (no compiler needed);
    probe=True also imports torch.utils.cpp_extension, as loading a package does."""
    missing = [name for name in AOTI_LOADER_MODULES if not _importable(name)]
    if missing:
        if getattr(sys, "frozen", False):
            return (f"the installed app leaves out {', '.join(missing)}, which loading an AOTInductor "
                    "package needs; run it from a pip installation")
        return (f"loading an AOTInductor package needs {', '.join(missing)}, missing from this "
                "Python (pip install setuptools packaging)")
    if not probe:
        return None
    try:
        importlib.import_module("torch.utils.cpp_extension")
    except Exception as exc:
        return f"PyTorch's loader for AOTInductor packages does not import here ({type(exc).__name__})"
    return None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _executorch_files_problem(files: tuple[str, ...]) -> str | None:
    """Whether the executorch package and `files` in it are installed, without importing it."""
    if package_version("executorch") is None:
        if getattr(sys, "frozen", False):
            return ("the installed app does not include ExecuTorch; use a pip installation with "
                    f"the executorch extra ({EXECUTORCH_EXTRA})")
        return f"the executorch package is not installed ({EXECUTORCH_EXTRA})"
    spec = importlib.util.find_spec("executorch")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for name in files:
        if not any(_installed(root / name) for root in roots):
            what = f"{name} is missing" if Path(name).suffix else \
                f"its native library {name} is missing or built for another Python"
            return f"the installed executorch package is incomplete ({what}); reinstall it " \
                   f"({EXECUTORCH_EXTRA})"
    return None


def _installed(path: Path) -> bool:
    """A file, or (for a name without suffix) a native library built for this Python."""
    if path.suffix:
        return path.is_file()
    return any(path.with_name(path.name + ext).is_file()
               for ext in importlib.machinery.EXTENSION_SUFFIXES)


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


def targets_and_runners(probe: bool = True) -> list[Capability]:
    """Every export target and runner with whether it works here and, if not, why (probe: see
    executorch_problem)."""
    compiler = _first(_torch_problem, compiler_problem)
    checks = {
        ("onnx", "target"): _first(_torch_problem, _onnx_problem),
        ("torchscript", "target"): _first(_torch_problem),
        ("pt2", "target"): _first(_torch_problem),
        ("aoti", "target"): (compiler and f"AOTInductor needs a C++ compiler, but {compiler}")
        or aoti_runtime_problem(probe),  # the export loads the package back to check it
        ("executorch", "target"): _first(_torch_problem, lambda: executorch_problem(probe)),
        ("eager", "runner"): _first(_torch_problem),
        ("compiled", "runner"): compiler and f"Compiling with torch.compile needs a C++ compiler, "
                                             f"but {compiler}",
        ("torchscript", "runner"): _first(_torch_problem),
        ("pt2", "runner"): _first(_torch_problem),
        ("aoti", "runner"): _first(_torch_problem, lambda: aoti_runtime_problem(probe)),
        ("onnxruntime", "runner"): _first(_ort_problem),
        ("executorch", "runner"): _first(_torch_problem, lambda: executorch_runtime_problem(probe)),
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


def capabilities(probe: bool = False) -> dict[str, Any]:
    """The whole report as plain data (what `doctor --json` prints); `probed` says whether
    ExecuTorch was imported (probe=True) or judged by its installed files."""
    compiler = compiler_problem()
    found = targets_and_runners(probe)
    return {
        "probed": probe,
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
    if not report["probed"] and report["versions"]["executorch"]:
        lines.append(NOT_PROBED)
    return "\n".join(lines)
