"""An AOTInductor package (torch._inductor.aoti_load_package): compiled machine code, so it loads
only with trust=True. It is a .pt2-style zip whose entries hold a `data/aotinductor/` folder; the
input and output names come from the metadata core.export.aoti writes, else from the call spec."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from core.errors import CheckFailed
from core.runtime.torch_common import TorchRunner, load_timed, untrusted

NAMES_KEY = "checkpoint_studio.names"  # core.export.aoti.NAMES_KEY (kept apart: no export import)


def sniff(path: Path) -> bool:
    """A zip holding AOTInductor's compiled model (`<archive>/data/aotinductor/...`)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return False
        with zipfile.ZipFile(path) as archive:
            return any("/data/aotinductor/" in f"/{name}" for name in archive.namelist())
    except Exception:  # a damaged or odd zip is not a package; the readers say what it is
        return False


class AotiRunner(TorchRunner):
    backend = "aoti"

    @classmethod
    def load(cls, path: str | Path, trust: bool = False, **kwargs: Any) -> AotiRunner:
        import torch

        from core.capabilities import aoti_runtime_problem

        path = str(path)
        if not trust:
            raise untrusted(path, "AOTInductor package (compiled machine code)")
        problem = aoti_runtime_problem(probe=False)  # the load itself is the probe
        if problem:
            raise CheckFailed(f"'{path}' is an AOTInductor package, which cannot run here: {problem}.")
        compiled, seconds = load_timed(lambda: torch._inductor.aoti_load_package(path),
                                       "AOTInductor package", path)
        names = _names(compiled)
        return cls(compiled, f"aoti ({Path(path).name})", load_seconds=seconds, source=path,
                   input_names=names.get("inputs") or ["x"],
                   output_names=names.get("outputs"), **kwargs)


def _names(compiled: Any) -> dict[str, list[str]]:
    try:
        names = json.loads(compiled.get_metadata().get(NAMES_KEY, "{}"))
    except (AttributeError, RuntimeError, ValueError):
        return {}
    return names if isinstance(names, dict) else {}
