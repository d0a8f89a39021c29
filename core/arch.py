"""Architecture sources -> nn.Module, and loading a checkpoint's weights into it with a report.

Sources (`load_architecture(source, ...)`):
  - `package.module:callable` - imported like Python would (plus `search_path`, appended to sys.path
    while it loads); the callable (a class or a function, dotted attributes allowed) is called with
    the JSON `kwargs`.
  - `path/to/file.py:callable` - that one file is loaded as a module (its folder is not put on
    sys.path, so it cannot import its neighbours).
  - a Hugging Face model folder (with config.json) - needs `transformers`; nothing is downloaded.
  - a TorchScript file, a `.pt2` ExportedProgram, a fully pickled nn.Module - these are code from
    the file and load only with `trust=True`.
Choosing the first two runs the user's own code by their request; nothing else is imported.

`meta=True` builds code sources on the meta device (no memory, no init); `load_weights` on such a
module only matches keys (a dry run reading no tensor data) - what `diff --model` needs.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import CheckpointError, ExportError
from core.model import Checkpoint, TensorInfo

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

Remap = Mapping[str, str] | Callable[[str], "str | None"]
PROGRAM_FORMATS = {"torchscript": "TorchScript program", "pt2": ".pt2 ExportedProgram",
                   "torch-zip": "pickled model", "torch-legacy": "pickled model"}


def source_kind(source: str) -> str:
    """"callable" | "file" (a .py) | "hf" (model folder) | "program" (a saved model file)."""
    path = Path(source)
    if path.is_dir():
        return "hf"
    if path.is_file():
        return "program"
    head, sep, _ = source.rpartition(":")
    if sep and head.endswith(".py"):
        return "file"
    if source.endswith(".py"):
        raise ExportError(f"Name the function or class to call in '{source}', e.g. "
                          f"'{source}:build'.")
    if sep and head:
        return "callable"
    if path.suffix or "/" in source or "\\" in source:
        raise ExportError(f"The file or folder '{source}' does not exist.")
    raise ExportError(f"'{source}' is not an architecture source: give 'package.module:callable', "
                      "'file.py:callable', a Hugging Face model folder or a saved model file.")


def load_architecture(source: str, kwargs: dict[str, Any] | None = None, *, trust: bool = False,
                      meta: bool = False, search_path: str | Path | None = None) -> nn.Module:
    """Build the nn.Module a source describes, in eval mode (see the module docstring)."""
    from torch import nn

    kind = source_kind(source)
    if kind == "program":
        model = load_program(Path(source), trust=trust)
    else:
        device = _meta_device() if meta else contextlib.nullcontext()
        with _search_path(search_path), device:
            if kind == "hf":
                model = _build_hf(Path(source), kwargs, trust)
            else:
                target = _resolve_callable(source, kind)
                model = _call(target, source, kwargs)
    if not isinstance(model, nn.Module):
        raise ExportError(f"'{source}' gave a {type(model).__name__}, not a torch nn.Module.")
    return _eval(model)


def _eval(model: nn.Module) -> nn.Module:
    """eval() where the module allows it (a .pt2 program's module has no train/eval switch)."""
    with contextlib.suppress(NotImplementedError):
        model.eval()
    return model


def _call(target: Callable[..., Any], source: str, kwargs: dict[str, Any] | None) -> Any:
    try:
        return target(**(kwargs or {}))
    except Exception as exc:
        raise ExportError(f"Building the model with '{source}' failed: {type(exc).__name__}: "
                          f"{exc}", _user_traceback()) from None


def _resolve_callable(source: str, kind: str) -> Callable[..., Any]:
    where, _, attr = source.rpartition(":")
    module = _load_file(Path(where)) if kind == "file" else _import(where)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = ", ".join(_callables(module)) or "none"
            raise ExportError(f"'{where}' has no '{attr}' to build the model with.",
                              f"callables defined there: {found}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ExportError(f"'{attr}' in '{where}' is a {type(obj).__name__}, not something to call.")
    return obj


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ExportError(f"The module '{name}' could not be found; check the name, or run "
                              "from the folder that holds it.", str(exc)) from None
        raise _import_failed(name) from None
    except Exception:
        raise _import_failed(name) from None


def _load_file(path: Path) -> Any:
    if not path.is_file():
        raise ExportError(f"The file '{path}' does not exist.")
    name = f"ckpt_studio_user_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExportError(f"'{path}' cannot be loaded as a Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _import_failed(str(path)) from None
    return module


def _import_failed(name: str) -> ExportError:
    return ExportError(f"Importing '{name}' failed: its code raised an error.", _user_traceback())


def _user_traceback() -> str:
    return "".join(traceback.format_exc(limit=-8))


def _callables(module: Any) -> list[str]:
    own = getattr(module, "__name__", None)
    return [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
            and getattr(v, "__module__", None) == own]


@contextlib.contextmanager
def _search_path(folder: str | Path | None) -> Iterator[None]:
    if folder is None or str(folder) in sys.path:
        yield
        return
    sys.path.append(str(folder))  # appended: never shadows installed packages
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def _meta_device() -> Any:
    import torch

    return torch.device("meta")


def _build_hf(folder: Path, kwargs: dict[str, Any] | None, trust: bool) -> Any:
    if not (folder / "config.json").is_file():
        raise ExportError(f"The folder '{folder}' has no config.json, so it is not a Hugging Face "
                          "model folder.")
    try:
        import transformers
    except ImportError:
        raise ExportError("This is a Hugging Face model folder, which needs the 'transformers' "
                          "package; install it (pip install transformers) and try again.") from None
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True,
                                                         trust_remote_code=trust, **(kwargs or {}))
        names = getattr(config, "architectures", None) or []
        cls = getattr(transformers, names[0], None) if names else None
        if cls is not None:
            return cls(config)
        return transformers.AutoModel.from_config(config, trust_remote_code=trust)
    except Exception as exc:
        raise ExportError(f"transformers could not build the model in '{folder}'.",
                          f"{type(exc).__name__}: {exc}") from None


def load_program(path: Path, *, trust: bool) -> nn.Module:
    """A TorchScript file, a .pt2 ExportedProgram or a pickled nn.Module; needs `trust=True`."""
    from core.formats import open_checkpoint

    checkpoint = open_checkpoint(path)
    fmt = checkpoint.format
    what = PROGRAM_FORMATS.get(fmt)
    if fmt in ("torch-zip", "torch-legacy") and not any(f.kind == "global"
                                                        for f in checkpoint.findings):
        what = None  # a plain state dict: nothing in it builds a module
    if what is None:
        raise ExportError(f"'{path.name}' is a {fmt} file with weights only; give the "
                          "architecture as code (module:callable or file.py:callable).")
    if not trust:
        raise ExportError(f"'{path.name}' is a {what}: loading it runs code stored in the file; "
                          "allow that only for files you trust (--trust).")
    import torch

    try:
        if fmt == "torchscript":
            return torch.jit.load(str(path), map_location="cpu")
        if fmt == "pt2":
            return torch.export.load(str(path)).module()
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ExportError(f"Loading the {what} '{path.name}' failed.",
                          f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- weights

def expected_keys(module: nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    """What `module.load_state_dict` expects: name -> (shape, dtype) (works on meta modules)."""
    return {name: (tuple(t.shape), str(t.dtype).replace("torch.", ""))
            for name, t in module.state_dict(keep_vars=True).items()}


@dataclass
class LoadReport:
    """What loading a checkpoint into a module found; `missing`/`unexpected`/`size_mismatch` are
    what `load_state_dict(strict=True)` would complain about (names in the module's terms)."""

    section: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    size_mismatch: list[dict[str, Any]] = field(default_factory=list)
    tied: dict[str, str] = field(default_factory=dict)  # missing name -> loaded name, same tensor
    ignored: dict[str, str] = field(default_factory=dict)  # name -> why the model's rules skip it
    prefix_stripped: str = ""
    prefix_added: str = ""
    renamed: int = 0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing is unexpected or mis-shaped and every missing key is a tied alias."""
        return not self.unexpected and not self.size_mismatch and set(self.missing) <= set(self.tied)

    def summary(self) -> str:
        lines = [f"{self.loaded} tensors {'matched' if self.dry_run else 'loaded'} from section "
                 f"'{self.section}'"]
        if self.prefix_stripped or self.prefix_added:
            how = (f"the prefix '{self.prefix_stripped}' was stripped" if self.prefix_stripped
                   else f"the prefix '{self.prefix_added}' was added")
            lines.append(f"{how} so the names line up with the model's")
        for title, names in (("missing", self.missing), ("unexpected", self.unexpected)):
            if names:
                lines.append(f"{title} ({len(names)}): {', '.join(names[:20])}"
                             + (" ..." if len(names) > 20 else ""))
        lines += [f"size mismatch: {m['name']} checkpoint {m['checkpoint']} vs model {m['model']}"
                  for m in self.size_mismatch[:20]]
        lines += [f"tied: {a} shares {b}" for a, b in self.tied.items()]
        lines += [f"ignored: {name} ({why})" for name, why in list(self.ignored.items())[:20]]
        return "\n".join(lines)

    def error(self) -> ExportError:
        parts = [f"{len(v)} {k}: {', '.join(v[:3])}" + (f" and {len(v) - 3} more" if len(v) > 3 else "")
                 for k, v in (("missing", self.missing), ("unexpected", self.unexpected),
                              ("with a different shape", [m["name"] for m in self.size_mismatch])) if v]
        return ExportError(f"The checkpoint's weights do not fit this architecture "
                           f"({'; '.join(parts)}).", self.summary())

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"ok": self.ok}


def load_weights(module: nn.Module, checkpoint: Checkpoint, remap: Remap | None = None,
                 section: str | None = None) -> LoadReport:
    """Load a checkpoint section (default: its weights) into `module` and report.

    `remap` renames checkpoint keys first (a dict, or a function returning the new name or None to
    drop). If the names then don't line up but do after stripping (or adding) one common prefix
    such as 'model.' or 'module.', that is applied and reported. Size-mismatched tensors are left
    out; missing/unexpected keys come from torch's own `load_state_dict`. A module on the meta
    device gets a dry run (nothing read). The module ends in eval mode."""
    name = section or checkpoint.weights
    if name is None or name not in checkpoint.sections:
        raise CheckpointError(f"The file has no section '{name}' with weights."
                              if name else "The file holds no model weights.")
    infos, report = _renamed(checkpoint.sections[name].tensors, remap, LoadReport(name))
    expected = expected_keys(module)
    infos = _align_prefix(infos, expected, report, checkpoint.sections[name].common_prefix)
    report.dry_run = _on_meta(module)
    fitting = {}
    for key, info in infos.items():
        want = expected.get(key)
        if want is not None and tuple(info.shape) != want[0] and not (want[0] == ()
                                                                      and info.shape == (1,)):
            report.size_mismatch.append({"name": key, "checkpoint": list(info.shape),
                                         "model": list(want[0])})
        else:
            fitting[key] = info
    _load(module, checkpoint, fitting, report)
    _eval(module)
    return report


def _renamed(tensors: dict[str, TensorInfo], remap: Remap | None,
             report: LoadReport) -> tuple[dict[str, TensorInfo], LoadReport]:
    if remap is None:
        return dict(tensors), report
    out: dict[str, TensorInfo] = {}
    for key, info in tensors.items():
        new = remap(key) if callable(remap) else remap.get(key, key)
        if new is None:
            continue
        report.renamed += new != key
        out[new] = info
    return out, report


def _align_prefix(infos: dict[str, TensorInfo], expected: Mapping[str, Any], report: LoadReport,
                  hint: str) -> dict[str, TensorInfo]:
    """Strip or add one prefix when that makes more checkpoint names match the module's."""
    base = len(infos.keys() & expected.keys())
    if base == len(expected) or not infos:
        return infos
    candidates = {("strip", hint)} if hint else set()
    for names, other, how in ((infos, expected, "strip"), (expected, infos, "add")):
        for key in list(names)[:2000]:
            for i, ch in enumerate(key):
                if ch == "." and key[i + 1:] in other:
                    candidates.add((how, key[:i + 1]))
    best, best_count = None, base
    for how, prefix in sorted(candidates):
        moved = _with_prefix(infos, how, prefix)
        count = len(moved.keys() & expected.keys()) if moved is not None else -1
        if count > best_count:
            best, best_count = (how, prefix, moved), count
    if best is None:
        return infos
    how, prefix, moved = best
    if how == "strip":
        report.prefix_stripped = prefix
    else:
        report.prefix_added = prefix
    return moved  # type: ignore[return-value]


def _with_prefix(infos: dict[str, TensorInfo], how: str,
                 prefix: str) -> dict[str, TensorInfo] | None:
    if how == "add":
        return {prefix + k: v for k, v in infos.items()}
    out = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in infos.items()}
    return out if len(out) == len(infos) else None  # a collision: not this prefix


def _on_meta(module: nn.Module) -> bool:
    tensors = list(module.state_dict(keep_vars=True).values())
    return bool(tensors) and all(t.device.type == "meta" for t in tensors)


def _load(module: nn.Module, checkpoint: Checkpoint, infos: dict[str, TensorInfo],
          report: LoadReport) -> None:
    import torch

    if report.dry_run:
        state = {k: torch.empty(i.shape, dtype=getattr(torch, i.dtype, torch.float32),
                                device="meta") for k, i in infos.items()}
    else:
        state = {k: checkpoint.read(i.name, report.section) for k, i in infos.items()}
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ExportError("The checkpoint's weights could not be loaded into this architecture.",
                          str(exc)) from None
    report.missing = sorted(result.missing_keys)
    report.unexpected = sorted(result.unexpected_keys)
    report.loaded = len(state) - len(report.unexpected)
    mismatched = {m["name"] for m in report.size_mismatch}
    report.missing = [k for k in report.missing if k not in mismatched]
    report.tied = _tied(module, report.missing, set(state) - set(report.unexpected))


def _tied(module: nn.Module, missing: list[str], loaded: set[str]) -> dict[str, str]:
    """Missing names whose tensor is the very tensor of a loaded name (tied weights)."""
    tensors = module.state_dict(keep_vars=True)
    by_id = {id(tensors[k]): k for k in sorted(loaded) if k in tensors}
    return {k: by_id[id(tensors[k])] for k in missing if id(tensors[k]) in by_id}
