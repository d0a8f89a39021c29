"""Reader for sharded checkpoints: a `*.safetensors.index.json` or `pytorch_model.bin.index.json`
with a "weight_map".

The result is one Checkpoint whose "model" section holds every tensor of every shard; each
tensor's Storage points into its own shard file. Shards are safetensors files or torch.save state
dicts (read through the restricted pickle interpreter), told apart by their content. Shards must
be plain file names next to the index (or, when the index is a link as in the Hugging Face cache,
next to the file it links to).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from core.errors import CheckpointError, CorruptFile, UnsafeContent
from core.formats import bin_index, safetensors
from core.model import Checkpoint, Finding, TensorInfo

FORMAT = "safetensors-sharded"
TORCH_FORMAT = "torch-sharded"  # the same index over torch.save shards (pytorch_model-*.bin)
MAX_INDEX_BYTES = 64 * 1024 * 1024


def sniff(path: Path, head: bytes) -> bool:
    """A JSON object (at most 64 MB) that mentions "weight_map"; open() checks the rest."""
    if head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] != b"{":
        return False
    try:
        with Path(path).open("rb") as f:
            return b'"weight_map"' in _read_at_most(f, MAX_INDEX_BYTES)
    except OSError:
        return False


def open(path: Path) -> Checkpoint:
    path = Path(path)
    index = _load_index(path)
    weight_map = _weight_map(index.get("weight_map"))
    shard_names = list(dict.fromkeys(weight_map.values()))
    folder_roots = _allowed_roots(path)
    tensors: dict[str, TensorInfo] = {}
    findings: list[Finding] = []
    kinds = set()
    for shard in shard_names:
        shard_path = _shard_path(path.absolute().parent, shard, folder_roots)
        shard_tensors, shard_findings, kind = bin_index.read_shard(shard_path, shard)
        kinds.add(kind)
        findings += shard_findings
        _merge_shard(shard, shard_tensors, weight_map, tensors, findings)
    missing = [name for name in weight_map if name not in tensors]
    if missing:
        shard = weight_map[missing[0]]
        raise CorruptFile(
            f"The index says the tensor '{missing[0]}' is in '{shard}', but it is not there.",
            f"{len(missing)} tensor(s) listed in the weight map are missing: {missing[:10]}")
    metadata = dict(index.get("metadata") or {})
    sections, weights = safetensors.make_sections(safetensors.with_aliases(tensors, metadata))
    metadata["shards"] = shard_names
    fmt = FORMAT if kinds == {bin_index.SAFETENSORS} else TORCH_FORMAT
    return Checkpoint(path=path, format=fmt, sections=sections, weights=weights,
                      metadata=metadata, findings=findings)


def _read_at_most(f: BinaryIO, limit: int) -> bytes:
    """Up to `limit` bytes; read(limit) itself would allocate `limit` bytes for any file."""
    return f.read(min(limit, os.fstat(f.fileno()).st_size + 1))


def _load_index(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            raw = _read_at_most(f, MAX_INDEX_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"The file '{path.name}' could not be read.", str(exc)) from None
    if len(raw) > MAX_INDEX_BYTES:
        raise CorruptFile("This shard index is too large to be a real index file.",
                          f"{path.name} is over {MAX_INDEX_BYTES} bytes")
    try:
        index = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, RecursionError) as exc:
        raise CorruptFile("This shard index is not valid JSON.", str(exc)) from None
    if not isinstance(index, dict):
        raise CorruptFile("This shard index is not a JSON object.")
    return index


def _weight_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise CorruptFile("This shard index is damaged: its weight map must name a file for "
                          "every tensor.", f"weight_map: {value!r:.200}")
    if not value:
        raise CorruptFile("This shard index lists no tensors.")
    return value


def _allowed_roots(index_path: Path) -> list[str]:
    """The index's folder, and the folder of the file it links to (Hugging Face cache blobs)."""
    given = os.path.realpath(index_path.absolute().parent)
    linked = os.path.dirname(os.path.realpath(index_path))
    return list(dict.fromkeys([given, linked]))


def _unsafe(shard: str, why: str) -> UnsafeContent:
    finding = Finding(kind="external-data", name=shard, severity="dangerous",
                      message=f"The index points to '{shard}', {why}.")
    return UnsafeContent(f"This shard index points to '{shard}', {why}; it was not opened.",
                         [finding], "shards must be plain file names in the index's folder")


def _shard_path(folder: Path, shard: str, roots: list[str]) -> Path:
    if (not shard or shard in (".", "..") or "/" in shard or "\\" in shard or "\0" in shard
            or os.path.isabs(shard) or (len(shard) > 1 and shard[1] == ":")):
        raise _unsafe(shard, "which is not a plain file name next to the index")
    path = folder / shard
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"The shard '{shard}' is missing: it should be next to the index.",
                              str(path)) from None
    except OSError as exc:
        raise CheckpointError(f"The shard '{shard}' could not be read.", str(exc)) from None
    real = os.path.realpath(path)
    if os.path.dirname(real) not in roots:
        raise _unsafe(shard, "which is a link to a file outside the model's folder")
    if not stat.S_ISREG(st.st_mode):
        raise _unsafe(shard, "which is not a regular file")
    return path


def _merge_shard(shard: str, shard_tensors: dict[str, TensorInfo], weight_map: dict[str, str],
                 tensors: dict[str, TensorInfo], findings: list[Finding]) -> None:
    for name, info in shard_tensors.items():
        listed = weight_map.get(name)
        if listed == shard or (listed is None and name not in tensors):
            tensors[name] = info
        if listed != shard:
            where = "is not in the index" if listed is None else f"belongs to '{listed}'"
            findings.append(Finding(
                kind="structure", name=name, severity="info", where=shard,
                message=f"The shard '{shard}' holds a tensor '{name}' that {where}.",
                blocks_weights_only=False))
