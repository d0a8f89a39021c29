"""The `__metadata__` a converted safetensors file carries, and the source file's hash.

Keys written: `format` ("pt"), the source's non-tensor values (epoch, versions, hyper-parameters)
as strings (JSON for anything that is not already text), `checkpoint_studio` (a JSON record: app
version, source name/format, `source_blake3` or `source_sha256`, transforms) and, when tied
tensors were written once, `checkpoint_studio.aliases` (JSON {alias: written name}; the
safetensors reader restores them), and `checkpoint_studio.preprocess` when the source records
its preprocessing (core.inputs.preprocess).

The source hash is computed in a background thread while the tensors stream (see hashing.py);
writers put the hasher's placeholder in the header and patch the real digest in before the file
is moved into place. For a sharded source the digest is of its index file.
"""

from __future__ import annotations

import json
from typing import Any

from core import __version__
from core.convert.hashing import HASHES
from core.convert.transforms import ConvertOptions, Plan
from core.formats.safetensors import ALIASES_KEY
from core.inputs.preprocess import METADATA_KEY, find_recorded
from core.model import Checkpoint

RECORD_KEY = "checkpoint_studio"
MAX_VALUE_CHARS = 65_536
_SKIP = {"format", "total_size", "shards", RECORD_KEY, ALIASES_KEY}


def build_metadata(checkpoint: Checkpoint, plan: Plan, options: ConvertOptions,
                   digest: str, algorithm: str) -> dict[str, str]:
    """The string-only metadata for the output (`digest`, the source's `algorithm` hash, may be a
    placeholder to patch later)."""
    out: dict[str, str] = {"format": "pt"}
    for key, value in source_values(checkpoint, plan).items():
        out.setdefault(key, _text(value))
    if plan.aliases:
        out[ALIASES_KEY] = json.dumps(plan.aliases, sort_keys=True)
    recorded = find_recorded(checkpoint.metadata)  # a TorchScript/.pt2/ONNX source's preprocessing
    if recorded is not None:
        out[METADATA_KEY] = recorded.to_json()
    out[RECORD_KEY] = json.dumps(record(checkpoint, options, digest, algorithm))
    return out


def record(checkpoint: Checkpoint, options: ConvertOptions, digest: str,
           algorithm: str) -> dict[str, Any]:
    return {"version": __version__, "source": checkpoint.path.name,
            "source_format": checkpoint.format, f"source_{algorithm}": digest,
            "transforms": options.describe()}


def recorded_digest(record_text: str) -> str:
    """The source hash in a `checkpoint_studio` record ("" when there is none)."""
    found = json.loads(record_text) if record_text else {}
    return next((found[f"source_{name}"] for name in HASHES if f"source_{name}" in found), "")


def source_values(checkpoint: Checkpoint, plan: Plan) -> dict[str, Any]:
    """Non-tensor values of the written sections and of the 'training' section, then file metadata."""
    values: dict[str, Any] = {}
    for name in [*plan.sections, "training"]:
        section = checkpoint.sections.get(name)
        for key, value in (section.values.items() if section else ()):
            values.setdefault(key, value)
    if checkpoint.format.startswith("safetensors"):
        for key, value in checkpoint.metadata.items():
            if key not in _SKIP:
                values.setdefault(key, value)
    return values


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"
