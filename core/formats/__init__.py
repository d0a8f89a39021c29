"""Reader registry: sniff a file by its content (never its extension) and open it.

A reader is a module with `FORMAT: str`, `sniff(path, head) -> bool` and `open(path) -> Checkpoint`.
Zip-based readers come before `torch_zip` because they are more specific.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from core.errors import CheckpointError, CorruptFile, UnsupportedFormat
from core.formats import (
    folder,
    gguf,
    onnx,
    pt2,
    safetensors,
    safetensors_index,
    torch_legacy,
    torch_zip,
    torchscript,
)
from core.model import Checkpoint, Finding

READERS: list[ModuleType] = [
    safetensors, safetensors_index, pt2, torchscript, torch_zip, torch_legacy, gguf, onnx,
]

HEAD_BYTES = 4096
NO_TENSORS = "no-tensors"  # Finding.kind for a file that opened but holds no tensors


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Open any supported file, or a model folder (the weights inside it, see `folder`), and return
    its metadata; reads no tensor data, runs no code."""
    path = Path(path)
    if path.is_dir():
        weights = folder.weights_in(path)
        return folder.attach_config(open_checkpoint(weights), path)
    head = _read_head(path)
    for reader in READERS:
        if reader.sniff(path, head):
            try:
                return _say_when_empty(reader.open(path))
            except CheckpointError:
                raise
            except (RecursionError, MemoryError) as exc:
                raise CorruptFile("The file is too deeply nested or too large to read safely.",
                                  repr(exc)) from None
            except Exception as exc:  # a reader bug or an input we did not foresee
                raise CorruptFile(f"This {reader.FORMAT} file could not be read; it may be damaged.",
                                  f"{type(exc).__name__}: {exc}") from None
    raise UnsupportedFormat(_describe_unknown(path, head))


def _say_when_empty(checkpoint: Checkpoint) -> Checkpoint:
    """A file that yields no tensors gets a finding saying so, so it never looks like success."""
    if checkpoint.all_tensors() or any(f.kind == NO_TENSORS for f in checkpoint.findings):
        return checkpoint
    values = [key for section in checkpoint.sections.values() for key in section.values]
    why = (f"it holds only plain values ({', '.join(values[:5])}{', ...' if len(values) > 5 else ''})"
           if values else "it lists none")
    checkpoint.findings.append(Finding(
        kind=NO_TENSORS, name=checkpoint.path.name, severity="info", blocks_weights_only=False,
        message=f"This {checkpoint.format} file holds no tensors: {why}."))
    return checkpoint


def _read_head(path: Path) -> bytes:
    if not path.exists():
        raise CheckpointError(f"The file '{path}' does not exist.")
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as exc:
        raise CheckpointError(f"The file '{path}' could not be read.", str(exc)) from None
    if not head:
        raise CorruptFile(f"The file '{path.name}' is empty.")
    return head


def _describe_unknown(path: Path, head: bytes) -> str:
    kinds = [
        (b"PK\x03\x04", "a ZIP archive without PyTorch data in it"),
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"%PDF", "a PDF document"),
        (b"\x1f\x8b", "a gzip-compressed file (decompress it first)"),
        (b"\x89HDF", "an HDF5 file (e.g. Keras), which this app does not read"),
    ]
    for magic, what in kinds:
        if head.startswith(magic):
            return f"'{path.name}' is not a PyTorch checkpoint: it looks like {what}."
    try:
        head.decode("utf-8")
        return f"'{path.name}' is not a PyTorch checkpoint: it looks like a text file."
    except UnicodeDecodeError:
        return f"'{path.name}' is not a checkpoint format this app knows."
