"""ONNX external data: find an initializer's bytes in a file next to the model, safely.

The rules follow onnx's own checker (DESIGN.md "Trust model"): the location must be a relative
path with no `..`, no link anywhere on the way, a regular file with one name, inside the folder.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PureWindowsPath

from core.errors import CheckpointError, CorruptFile, UnsafeContent
from core.model import Finding, Storage


def _unsafe(location: str, why: str) -> UnsafeContent:
    finding = Finding(kind="external-data", name=location, severity="dangerous",
                      message=f"The model wants its weights from '{location}', {why}.")
    return UnsafeContent(
        f"This ONNX model wants its weights from '{location}', {why}; it was not opened.",
        [finding], "external data must be a regular file inside the model's folder")


class ExternalData:
    """Resolves and checks each data file once; builds Storage for tensors stored in them."""

    def __init__(self, model_path: Path) -> None:
        self.folder = Path(model_path).absolute().parent
        self.files: dict[str, tuple[Path, int]] = {}

    def storage(self, name: str, entries: dict[str, str], dtype: str, nbytes: int) -> Storage:
        location = entries.get("location")
        if location is None:
            raise CorruptFile(f"This ONNX file is damaged: tensor '{name}' is stored in another "
                              "file but does not say which.", f"{name!r}: no 'location' entry")
        path, size = self._file(location)
        offset = _number(entries, "offset", name, 0)
        length = _number(entries, "length", name, None)
        if length is not None and length != nbytes:
            raise CorruptFile(
                f"This ONNX file is damaged: tensor '{name}' has a different size in "
                f"'{location}' than its shape and type need.",
                f"{name!r}: length {length}, expected {nbytes}")
        if offset + nbytes > size:
            raise CorruptFile(
                f"This ONNX model is damaged: tensor '{name}' ends past the end of its data file "
                f"'{location}'.", f"{name!r}: bytes {offset}..{offset + nbytes}, file has {size}")
        return Storage(path=path, key=name, offset=offset, nbytes=nbytes, dtype=dtype)

    def findings(self) -> list[Finding]:
        return [Finding(kind="external-data", name=loc, severity="info", blocks_weights_only=False,
                        message=f"Some weights are stored in '{loc}' next to the model.")
                for loc in self.files]

    def _file(self, location: str) -> tuple[Path, int]:
        if location not in self.files:
            self.files[location] = resolve(self.folder, location)
        return self.files[location]


def _number(entries: dict[str, str], key: str, name: str, default: int | None) -> int | None:
    value = entries.get(key)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise CorruptFile(f"This ONNX file is damaged: tensor '{name}' has an invalid {key}.",
                          f"{name!r}: {key} = {value!r:.50}")
    return int(value)


def resolve(folder: Path, location: str) -> tuple[Path, int]:
    """The checked path of a data file and its size; raises UnsafeContent on any escape."""
    if not location or "\0" in location:
        raise _unsafe(location, "which is not a valid file name")
    if (location.startswith(("/", "\\")) or os.path.isabs(location)
            or PureWindowsPath(location).drive):
        raise _unsafe(location, "which is an absolute path")
    if ".." in re.split(r"[\\/]", location):
        raise _unsafe(location, "which is outside the model's folder")
    path, st = folder, None
    for part in re.split(r"[\\/]" if os.name == "nt" else "/", location):
        if part in ("", "."):
            continue
        path = path / part
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise CheckpointError(f"The data file '{location}' that this ONNX model needs is "
                                  "missing.", f"{path}: {exc}") from None
        if stat.S_ISLNK(st.st_mode):
            raise _unsafe(location, "which is a link")
    if st is None or not stat.S_ISREG(st.st_mode):
        raise _unsafe(location, "which is not a regular file")
    if st.st_nlink > 1:
        raise _unsafe(location, "which has several names (hard links)")
    real, root = os.path.realpath(path), os.path.realpath(folder)
    if os.path.commonpath([real, root]) != root:
        raise _unsafe(location, "which is outside the model's folder")
    return path, st.st_size
