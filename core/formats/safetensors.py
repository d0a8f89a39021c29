"""Reader for .safetensors files, written by hand so opening never needs torch or the library.

Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the tensor bytes.
We enforce the same rules as the Rust loader (see DESIGN.md "Trust model").
"""

from __future__ import annotations

import json
from dataclasses import replace
from math import prod
from pathlib import Path
from typing import Any

from core.dtypes import SAFETENSORS, itemsize
from core.errors import CorruptFile
from core.model import Checkpoint, Finding, Section, Storage, TensorInfo

FORMAT = "safetensors"
MAX_HEADER = 100_000_000  # the Rust loader's limit
_SNIFF_MAX_HEADER = 1 << 32  # generous: open() gives the precise error for 100 MB < N < 4 GB
_JSON_SPACE = b" \t\r\n"
# __metadata__ key where our converter records tied tensors: JSON {alias name: written name}
ALIASES_KEY = "checkpoint_studio.aliases"


def _damaged(reason: str, details: str | None = None) -> CorruptFile:
    return CorruptFile(f"This safetensors file is damaged: {reason}.", details)


def sniff(path: Path, head: bytes) -> bool:
    """An 8-byte plausible header length followed by a JSON object."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n < _SNIFF_MAX_HEADER and head[8:].lstrip(_JSON_SPACE)[:1] == b"{"


def open(path: Path) -> Checkpoint:
    path = Path(path)
    tensors, metadata, findings = read_and_scan(path)
    sections, weights = make_sections(with_aliases(tensors, metadata))
    return Checkpoint(path=path, format=FORMAT, sections=sections, weights=weights,
                      metadata=dict(metadata), findings=findings)


def read_and_scan(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str], list[Finding]]:
    """`read_header` plus the pickles hidden in the file (see `safetensors_pickle`); a damaged
    file that is also a pickle calling code is refused as unsafe, naming what it calls."""
    from core.formats.safetensors_pickle import embedded_pickle_findings, name_payloads

    try:
        tensors, metadata = read_header(path)
    except CorruptFile as error:
        raise name_payloads(path, error) from None
    return tensors, metadata, embedded_pickle_findings(path, metadata, tensors)


def with_aliases(tensors: dict[str, TensorInfo], metadata: dict[str, str]) -> dict[str, TensorInfo]:
    """Give back the tied tensors a file we wrote recorded under ALIASES_KEY (one stored copy)."""
    raw = metadata.get(ALIASES_KEY)
    try:
        aliases = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return tensors
    out = dict(tensors)
    for alias, target in aliases.items() if isinstance(aliases, dict) else ():
        if isinstance(alias, str) and alias not in out and target in tensors:
            out[alias] = replace(tensors[target], name=alias)
    return out


def make_sections(tensors: dict[str, TensorInfo]) -> tuple[dict[str, Section], str | None]:
    """One "model" section holding a flat {name: TensorInfo} dict, roles assigned by layout."""
    from core.layout import build_sections

    return build_sections(tensors)


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate the header; returns ({name: TensorInfo}, __metadata__). Reads no data."""
    path = Path(path)
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        if size < 8:
            raise _damaged("it is too short to hold a header", f"file size {size} < 8")
        n = int.from_bytes(f.read(8), "little")
        _check_header_length(n, size)
        raw = f.read(n)
    header = _parse_json(raw)
    metadata = _metadata(header.pop("__metadata__", None))
    data_len = size - 8 - n
    tensors = {name: _tensor_info(path, name, entry, 8 + n) for name, entry in header.items()}
    _check_offsets(header, tensors, data_len)
    return tensors, metadata


def _check_header_length(n: int, size: int) -> None:
    if n > MAX_HEADER:
        raise _damaged("its header claims to be larger than the 100 MB the format allows",
                       f"header length {n} > {MAX_HEADER}")
    if n > size - 8:
        raise _damaged("its header is longer than the file itself; the file is probably truncated",
                       f"header length {n}, file size {size}")
    if n < 2:
        raise _damaged("its header is empty", f"header length {n}")


def _check_text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _damaged("its header holds a name that is not valid text",
                       f"lone surrogate in {value!r:.100}") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        _check_text(key)
        if key in out:
            raise _damaged(f"its header lists the name '{key}' twice", f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise _damaged("its header is not valid JSON", f"{name} is not allowed in JSON")


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _damaged("its header is not valid text", f"header is not UTF-8: {exc}") from None
    if not text.lstrip(" \t\r\n").startswith("{"):
        raise _damaged("its header is not a JSON object", f"header starts with {text[:20]!r}")
    try:
        header = json.loads(text, object_pairs_hook=_reject_duplicates,
                            parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _damaged("its header is not valid JSON", f"{type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise _damaged("its header is not a JSON object", f"header is a {type(header).__name__}")
    return header


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _damaged("its metadata is not a list of names and texts",
                       f"__metadata__ is a {type(value).__name__}")
    for key, item in value.items():
        if isinstance(item, str):
            _check_text(item)
        else:
            raise _damaged(f"its metadata entry '{key}' is not text",
                           f"__metadata__[{key!r}] is a {type(item).__name__}, only strings allowed")
    return value


def _is_uint(value: Any) -> bool:
    return type(value) is int and 0 <= value < (1 << 64)


def _tensor_info(path: Path, name: str, entry: Any, data_start: int) -> TensorInfo:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise _damaged(f"the entry for tensor '{name}' is incomplete",
                       f"{name!r}: expected dtype, shape and data_offsets, got {entry!r:.200}")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    dtype = SAFETENSORS.get(code) if isinstance(code, str) else None
    if dtype is None:
        raise _damaged(f"tensor '{name}' has a data type this app does not know",
                       f"{name!r}: dtype {code!r}")
    if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
        raise _damaged(f"tensor '{name}' has an invalid shape", f"{name!r}: shape {shape!r:.200}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_uint(o) for o in offsets)):
        raise _damaged(f"tensor '{name}' has an invalid position in the file",
                       f"{name!r}: data_offsets {offsets!r:.200}")
    begin, end = offsets
    storage = Storage(path=path, key=name, offset=data_start + begin,
                      nbytes=max(end - begin, 0), dtype=dtype)
    return TensorInfo(name=name, shape=tuple(shape), dtype=dtype, storage=storage)


def _check_offsets(header: dict[str, Any], tensors: dict[str, TensorInfo], data_len: int) -> None:
    """Sorted by offsets, tensors must tile [0, data_len) exactly, each sized shape x dtype."""
    start = 0
    for name in sorted(header, key=lambda k: tuple(header[k]["data_offsets"])):
        begin, end = header[name]["data_offsets"]
        info = tensors[name]
        if begin > start:
            raise _damaged(f"its index leaves a gap before tensor '{name}'",
                           f"{name!r} begins at {begin}, previous tensor ended at {start}")
        if begin < start or end < begin:
            raise _damaged(f"its index says tensor '{name}' overlaps another tensor",
                           f"{name!r}: data_offsets [{begin}, {end}], previous end {start}")
        if end > data_len:
            raise _damaged(f"its index says tensor '{name}' ends past the end of the file",
                           f"{name!r} ends at {end}, data section has {data_len} bytes")
        expected = prod(info.shape) * itemsize(info.dtype)
        if end - begin != expected:
            raise _damaged(f"tensor '{name}' takes a different number of bytes than its shape "
                           "and type need", f"{name!r}: {end - begin} bytes, shape {info.shape} "
                           f"x {info.dtype} needs {expected}")
        start = end
    if start != data_len:
        raise _damaged("there are extra bytes after the last tensor",
                       f"tensors end at {start}, data section has {data_len} bytes")
