"""llama.cpp tensor names (`blk.0.attn_q.weight`) back to Hugging Face names
(`model.layers.0.self_attn.q_proj.weight`), from the `gguf` package's own table (TensorNameMap).

That table maps many source names onto each llama.cpp name (one per family of checkpoints that
llama.cpp converts), so the reverse follows the family's Hugging Face layout: names under its block
prefix (`model.layers` for LLaMA-style models, the default; `transformer.h` for GPT-2-style ones),
under the same root for the rest (`model.norm`), and its output head (`lm_head`). A tensor with no
such name keeps its llama.cpp name, with a note, rather than a name from another family.
"""

from __future__ import annotations

import re
from dataclasses import replace

from core.errors import CheckpointError, CorruptFile
from core.formats.gguf import FORMAT, gguf_package
from core.model import Checkpoint, Storage, TensorInfo
from core.tensor_io import DECODERS, storage_bytes

_SUFFIXES = (".weight", ".bias")
# convert_hf_to_gguf.py reorders the rows of q_proj/k_proj for these families (rotary layout);
# with the Hugging Face names they are put back in Hugging Face order, as transformers does
_PERMUTED = {"llama", "deci", "granite", "granitemoe"}
UNPERMUTE = "gguf-unpermute-"
# where transformers keeps the blocks and the output head of a family; the table also lists the
# names of other checkpoints (e.g. Meta's "layers.0.attention.wq"), so the family decides
_ARCH_STYLE = {"gpt2": ("transformer.h", "lm_head"), "starcoder": ("transformer.h", "lm_head"),
               "gptneox": ("gpt_neox.layers", "embed_out")}


def hf_names(checkpoint: Checkpoint, names: list[str]
             ) -> tuple[dict[str, str], list[str], dict[str, TensorInfo]]:
    """{llama.cpp name: Hugging Face name} for the names the table knows, notes for the user, and
    {llama.cpp name: tensor to write instead} for the query/key weights put back in HF row order."""
    if checkpoint.format != FORMAT:
        raise CheckpointError(f"Mapping llama.cpp names to Hugging Face names applies to GGUF files "
                              f"only, and this is a {checkpoint.format} file.")
    gguf = gguf_package()
    arch_name = checkpoint.metadata.get("architecture")
    arch = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch_name)
    if arch is None:
        raise CheckpointError(f"The gguf package has no table of tensor names for the architecture "
                              f"'{arch_name}', so its names cannot be mapped to Hugging Face names.")
    candidates = _candidates(gguf, arch, _block_count(names))
    style, head = _ARCH_STYLE.get(arch_name, ("model.layers", "lm_head"))
    mapped: dict[str, str] = {}
    taken: dict[str, str] = {}
    for name in names:
        base, suffix = _split(name)
        hf = _pick(candidates.get(base, []), style, head)
        if hf is None:
            continue
        new = hf + suffix
        if new in taken:
            raise CheckpointError(f"Two tensors, '{taken[new]}' and '{name}', would both get the "
                                  f"Hugging Face name '{new}'; convert without the name mapping.")
        mapped[name], taken[new] = new, name
    notes = _notes(names, mapped)
    sources = _unpermuted(checkpoint, mapped, notes) if arch_name in _PERMUTED else {}
    return mapped, notes, sources


def _block_count(names: list[str]) -> int:
    """Blocks the names use; never more than there are names (a lying index builds no huge table)."""
    seen = [int(m.group(1)) + 1 for n in names if (m := re.match(r"blk\.(\d{1,9})\.", n))]
    return min(max(seen, default=0), len(names))


def _candidates(gguf: object, arch: object, blocks: int) -> dict[str, list[str]]:
    """llama.cpp base name -> the source names the table maps onto it, in the table's order."""
    table = gguf.get_tensor_name_map(arch, blocks)  # type: ignore[attr-defined]
    out: dict[str, list[str]] = {}
    for source, (_, target) in table.mapping.items():
        if source != target:
            out.setdefault(target, []).append(source)
    return out


def _split(name: str) -> tuple[str, str]:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def _pick(options: list[str], style: str, head: str) -> str | None:
    """The option under the model's block prefix (blocks) or its root (the rest); None: no such
    option, the llama.cpp name is kept rather than mixing naming schemes."""
    if head in options:
        return head
    root = style.split(".")[0] + "." if "." in style else ""
    found = [o for o in options if o.startswith(style + ".") or (root and o.startswith(root))]
    return found[0] if found else None


def _notes(names: list[str], mapped: dict[str, str]) -> list[str]:
    left = [n for n in names if n not in mapped]
    if not left:
        return []
    return [f"{len(left)} tensor(s) have no Hugging Face name in the gguf package's table and keep "
            f"their llama.cpp names, e.g. '{left[0]}'."]


def _unpermuted(checkpoint: Checkpoint, mapped: dict[str, str],
                notes: list[str]) -> dict[str, TensorInfo]:
    """The attn_q/attn_k tensors, read back in Hugging Face row order (per head: the two rotary
    halves one after the other again), where the head counts divide their rows."""
    hyper = checkpoint.metadata.get("hyperparameters", {})
    heads = hyper.get("attention.head_count")
    kv_heads = hyper.get("attention.head_count_kv", heads)
    tensors = {t.name: t for t in checkpoint.all_tensors()}
    out: dict[str, TensorInfo] = {}
    for name in mapped:
        base = _split(name)[0]
        count = heads if base.endswith(".attn_q") else kv_heads if base.endswith(".attn_k") else None
        info = tensors.get(name)
        if count is None or info is None or info.storage is None:
            continue
        rows = info.shape[0] if info.shape else 0
        if not isinstance(count, int) or count <= 0 or rows % (2 * count):
            notes.append(f"The rows of '{name}' could not be put back in Hugging Face order (the "
                         "file's head count does not divide them); it is written as stored.")
            continue
        encoding = f"{UNPERMUTE}{count}-{rows}-{info.storage.encoding}"
        DECODERS[encoding] = _decode_unpermuted
        out[name] = replace(info, storage=replace(info.storage, encoding=encoding))
    return out


def _decode_unpermuted(storage: Storage) -> bytes:
    import numpy as np

    heads, rows, inner = storage.encoding.removeprefix(UNPERMUTE).split("-", 2)
    data = storage_bytes(replace(storage, encoding=inner))
    count, rows_count = int(heads), int(rows)
    if not rows_count or len(data) % rows_count:
        raise CorruptFile(f"The tensor '{storage.key}' in this GGUF file is damaged: its size does "
                          "not fit its rows.", f"{len(data)} bytes, {rows_count} rows")
    stored = np.frombuffer(bytes(data), dtype=np.uint8).reshape(count, rows_count // count // 2, 2, -1)
    return np.ascontiguousarray(stored.swapaxes(1, 2)).tobytes()
