"""Find the weights inside nested training checkpoints and split a file's object tree into Sections."""

from __future__ import annotations

from typing import Any

from core.model import Section


def build_sections(tree: Any, default_name: str = "model") -> tuple[dict[str, Section], str | None]:
    """Split an unpickled object tree (dicts/lists/values with TensorInfo leaves) into Sections.

    Returns (sections by name, name of the weights section or None). Tensor names are assigned
    here (dotted paths inside their section).
    """
    raise NotImplementedError  # being written
