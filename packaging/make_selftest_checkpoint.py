"""Write resources/selftest/tiny.safetensors: the weights `--self-test` opens (no pickle shipped).

The tensors fit `core.selftest.tiny_model()` (Linear(4, 8) -> ReLU -> Linear(8, 3)). The values
come from a fixed seed, so running this again writes the same bytes.

    python packaging/make_selftest_checkpoint.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "resources" / "selftest" / "tiny.safetensors"
SHAPES = {"0.weight": (8, 4), "0.bias": (8,), "2.weight": (3, 8), "2.bias": (3,)}


def tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(shape) * 0.5).astype(np.float32)
            for name, shape in SHAPES.items()}


def main() -> None:
    DEST.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors(), str(DEST), metadata={"purpose": "ckpt-studio --self-test"})
    print(f"wrote {DEST.relative_to(ROOT)} ({DEST.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
