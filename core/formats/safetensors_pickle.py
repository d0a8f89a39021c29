"""Pickles hidden inside a safetensors file, read as data by our own interpreter (never run).

Loading a safetensors file never unpickles anything, but its bytes can still hold a pickle that
another tool would run: the whole file read from its first byte (a file that is both valid
safetensors and a pickle: `pickle.load`, or a loader that tries pickle first, runs it), a
`__metadata__` text that is a pickle (protocol 0 is plain text) or base64 of one, or a byte tensor
whose data is a pickle. Each is interpreted with `pickle_vm` (no imports, no calls) and reported:
the globals it names as usual findings, plus one finding saying where the pickle is.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import mmap
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.errors import CheckpointError, CorruptFile, UnsafeContent
from core.formats import pickle_vm
from core.model import Finding, TensorInfo

KIND = "embedded-pickle"  # Finding.kind of the finding that says where a pickle was found
_WHOLE_FILE = "the whole file, read from its first byte"
_BYTE_DTYPES = ("uint8", "int8")


def embedded_pickle_findings(path: Path, metadata: dict[str, str],
                             tensors: dict[str, TensorInfo]) -> list[Finding]:
    """Findings for every pickle inside the file (see the module doc); [] for an ordinary file."""
    findings: list[Finding] = []
    with path.open("rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        view = memoryview(mapped)
        findings += _look(view, _WHOLE_FILE, whole_file=True)
        for key, text in metadata.items():
            for raw, how in _metadata_candidates(text):
                findings += _look(raw, f"metadata entry '{key}'{how}")
        for info in tensors.values():
            storage = info.storage
            if info.dtype in _BYTE_DTYPES and storage is not None and storage.nbytes >= 2:
                chunk = view[storage.offset:storage.offset + storage.nbytes]
                findings += _look(chunk, f"the data of tensor '{info.name}'")
    finally:
        with contextlib.suppress(BufferError):  # a view held by a finished traceback: GC closes
            mapped.close()
    return findings


def name_payloads(path: Path, error: CorruptFile) -> CheckpointError:
    """A damaged safetensors file may still be a pickle that pickle.load (or a loader falling back
    to pickle) would run: refuse it as unsafe, naming what it calls, instead of only as damaged."""
    try:
        with path.open("rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # cannot be mapped (empty, special file): the error stands
        return error
    try:
        found = _look(memoryview(mapped), _WHOLE_FILE, whole_file=True)
    finally:
        with contextlib.suppress(BufferError):
            mapped.close()
    names = list(dict.fromkeys(f.name for f in found if f.kind != KIND and f.severity == "dangerous"))
    if not names:
        return error
    listed = ", ".join(f"'{n}'" for n in names[:3]) + (" and more" if len(names) > 3 else "")
    return UnsafeContent(f"This file is a damaged safetensors file that is also a pickle asking to "
                         f"run {listed} when unpickled; it was not opened and nothing in it was run.",
                         found, f"{error.message} ({error.details})" if error.details else error.message)


def _metadata_candidates(text: str) -> list[tuple[bytes, str]]:
    """The metadata text as bytes (protocol 0-2 pickles can be text) and, when it is base64 of
    a pickle (PROTO first), the decoded bytes."""
    out = [(text.encode("utf-8", "surrogatepass"), "")]
    if len(text) >= 4 and text.startswith("gA"):  # base64 of PROTO (0x80) + a protocol 0-5
        with contextlib.suppress(binascii.Error, ValueError):
            out.append((base64.b64decode(text, validate=True), " (base64)"))
    return out


def _look(data: Any, where: str, whole_file: bool = False) -> list[Finding]:
    """The findings of the pickle at the start of `data`, if it reads as one; [] otherwise.
    Read with the limits any pickle file gets: padding a payload past a smaller limit would hide it."""
    if not pickle_vm.is_pickle_start(bytes(data[:2])):
        return []
    complete = True
    try:
        found = pickle_vm.load(data, where=where).findings
    except UnsafeContent as exc:  # cut short, but it names what would have run before that
        found, complete = list(exc.findings), False
    except CheckpointError as exc:
        if "limit exceeded" in (exc.details or ""):  # read as a pickle up to a limit: say so
            return [_too_long_finding(where)]
        return []  # not a pickle (most bytes are not): nothing any unpickler would run
    if not found and not complete:
        return []
    if not whole_file:  # torch.load never unpickles a text or a tensor's bytes: nothing it refuses
        found = [replace(f, blocks_weights_only=False) for f in found]
    return [*found, _where_finding(where, found, complete, whole_file)]


def _where_finding(where: str, found: list[Finding], complete: bool, whole_file: bool) -> Finding:
    names = list(dict.fromkeys(f.name for f in found if f.severity == "dangerous"))
    listed = ", ".join(f"'{n}'" for n in names[:3]) + (" and more" if len(names) > 3 else "")
    who = ("pickle.load, or a loader that tries pickle before safetensors," if whole_file
           else "code that unpickles it")
    if names:
        what = f"a pickle that calls {listed}"
        then = f"{who} would run {'it' if len(names) == 1 else 'them'}"
    else:
        what, then = "a pickle that builds only plain data", f"{who} would read it"
    cut = "" if complete else " (damaged, but readable far enough to see this)"
    return Finding(kind=KIND, name="pickle", severity="dangerous" if names else "info",
                   message=f"This safetensors file also holds {what}{cut}; {then}. Opening it "
                           "as safetensors never unpickles it, and nothing was run.",
                   where=where, blocks_weights_only=bool(names) and whole_file)


def _too_long_finding(where: str) -> Finding:
    return Finding(kind=KIND, name="pickle", severity="info", where=where, blocks_weights_only=False,
                   message="Part of this safetensors file reads like a pickle too long or too complex "
                           "to read to its end; what it would do past that point was not checked. "
                           "Opening it as safetensors never unpickles it, and nothing was run.")
