"""One shard of a sharded checkpoint as a flat {name: TensorInfo} dict, whatever the shard holds.

Hugging Face writes `pytorch_model.bin.index.json` beside `pytorch_model-0000N-of-0000M.bin` shards
(torch.save state dicts) just as it writes `model.safetensors.index.json` beside safetensors
shards. Each shard is sniffed by its content: a safetensors file is read by its header, a torch.save
file (zip or legacy) through the restricted pickle interpreter, so nothing in it runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core.errors import CorruptFile
from core.formats import safetensors, torch_legacy, torch_zip
from core.formats.zip_archive import open_archive
from core.model import Finding, TensorInfo

SAFETENSORS, TORCH = "safetensors", "torch"
_HEAD = 4096


def shard_kind(path: Path, shard: str) -> str:
    """"safetensors" or "torch", from the shard's first bytes; anything else is refused."""
    with Path(path).open("rb") as f:
        head = f.read(_HEAD)
    if not head:
        raise CorruptFile(f"The shard '{shard}' is empty.")
    if safetensors.sniff(path, head):
        return SAFETENSORS
    if torch_zip.sniff(path, head) or torch_legacy.sniff(path, head):
        return TORCH
    raise CorruptFile(f"The shard '{shard}' is neither a safetensors file nor a PyTorch "
                      "checkpoint.", f"{path}: starts with {head[:16]!r}")


def read_shard(path: Path, shard: str) -> tuple[dict[str, TensorInfo], list[Finding], str]:
    """The shard's tensors by name, what the pickle scan saw in it, and its kind."""
    kind = shard_kind(path, shard)
    if kind == SAFETENSORS:
        tensors, _, findings = safetensors.read_and_scan(path)
        return tensors, [replace(f, where=f"{shard}: {f.where}") for f in findings], kind
    try:
        tree, findings, _ = (torch_zip.load_tree(open_archive(path)) if _is_zip(path)
                             else torch_legacy.load_tree(path))
    except CorruptFile as exc:  # name the shard: the user opened the index or its folder
        raise CorruptFile(f"The shard '{shard}' is damaged or incomplete, so this checkpoint cannot "
                          "be opened.", f"{exc.message} {exc.details or ''}".strip()) from None
    if not isinstance(tree, dict):
        raise CorruptFile(f"The shard '{shard}' does not hold a dictionary of tensors.",
                          f"{path}: top-level value is a {type(tree).__name__}")
    tensors = {str(name): value for name, value in tree.items() if isinstance(value, TensorInfo)}
    tensors = {name: replace(info, name=name) for name, info in tensors.items()}
    located = [replace(f, where=f"{shard}: {f.where}" if f.where else shard) for f in findings]
    return tensors, located, kind


def _is_zip(path: Path) -> bool:
    with Path(path).open("rb") as f:
        return f.read(4) == b"PK\x03\x04"
