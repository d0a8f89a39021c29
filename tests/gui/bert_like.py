"""A tiny BERT-style state dict (12 layers, 200+ tensors, real Hugging Face names) built at test time,
and a fine-tuned copy of it whose change grows with depth."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

HIDDEN, LAYERS, VOCAB = 16, 12, 120


def bert_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.05

    sd = {"embeddings.word_embeddings.weight": rand(VOCAB, HIDDEN),
          "embeddings.position_embeddings.weight": rand(64, HIDDEN),
          "embeddings.token_type_embeddings.weight": rand(2, HIDDEN),
          "embeddings.LayerNorm.weight": torch.ones(HIDDEN), "embeddings.LayerNorm.bias": torch.zeros(HIDDEN)}
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            sd[p + name + ".weight"], sd[p + name + ".bias"] = rand(HIDDEN, HIDDEN), rand(HIDDEN)
        sd[p + "attention.output.LayerNorm.weight"] = torch.ones(HIDDEN)
        sd[p + "attention.output.LayerNorm.bias"] = torch.zeros(HIDDEN)
        sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"] = rand(4 * HIDDEN, HIDDEN), \
            rand(4 * HIDDEN)
        sd[p + "output.dense.weight"], sd[p + "output.dense.bias"] = rand(HIDDEN, 4 * HIDDEN), rand(HIDDEN)
        sd[p + "output.LayerNorm.weight"], sd[p + "output.LayerNorm.bias"] = torch.ones(HIDDEN), \
            torch.zeros(HIDDEN)
    sd["pooler.dense.weight"], sd["pooler.dense.bias"] = rand(HIDDEN, HIDDEN), rand(HIDDEN)
    return sd


def fine_tuned(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Embeddings frozen (identical); each encoder layer moved more than the one before; the pooler
    replaced by a classifier head (keys only in one side)."""
    g = torch.Generator().manual_seed(1)
    out = {}
    for name, t in sd.items():
        if name.startswith("encoder.layer."):
            depth = int(name.split(".")[2])
            t = t + torch.randn(t.shape, generator=g) * (1e-4 * 2 ** depth)
        out[name] = t.clone()
    del out["pooler.dense.weight"], out["pooler.dense.bias"]
    out["classifier.weight"], out["classifier.bias"] = torch.randn(3, HIDDEN, generator=g), torch.zeros(3)
    return out


def write_pair(folder: Path) -> tuple[Path, Path]:
    a, b = folder / "bert-base.safetensors", folder / "bert-finetuned.safetensors"
    sd = bert_state_dict()
    save_file(sd, a)
    save_file(fine_tuned(sd), b)
    return a, b
