"""The preprocessing spec: how raw pixels (or text) become the model's input, and its text syntax.

Text syntax (the CLI's `--preprocess`; items separated by commas, a list's values by commas too):

    image: scale 1/255, mean 0.485,0.456,0.406, std 0.229,0.224,0.225, layout nhwc, uint8
    image: bgr, resize 256, crop 224, antialias off, channels 3, input pixels
    text: tokenizer path/to/hf-folder

Images. Raw pixels are an image as decoders give it: height x width x channels in RGB order.
`dtype` (`uint8` or `float32`) and `layout` (`nchw` or `nhwc`) are those of the raw pixels a
service feeds (and a baked artefact takes). The model's input is always float32 NCHW:
`x * scale`, channels reversed when the model wants `bgr`, then `(x - mean) / std` per channel.
`resize N` scales the shorter side to N (`resize HxW`: exactly), bilinear with or without
`antialias`; `crop N` (or `HxW`) takes the centre. Resize and crop are recorded, never baked.
`input NAME` names the model input it applies to (default: the first).

Text. `tokenizer FOLDER` refers to a Hugging Face folder's tokenizer files; it is recorded (the
folder name and the files' sha256), never baked.

Pure data and parsing: no torch. The spec is stored in artefacts as JSON under `METADATA_KEY`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from core.errors import ExportError

METADATA_KEY = "checkpoint_studio.preprocess"  # ONNX metadata_props / safetensors __metadata__ key
EXTRA_FILE = "checkpoint_studio_preprocess.json"  # TorchScript / .pt2 extra file name
KINDS = ("image", "text")
LAYOUTS = ("nchw", "nhwc")
ORDERS = ("rgb", "bgr")
PIXEL_DTYPES = ("uint8", "float32")
EXAMPLE = "image: scale 1/255, mean 0.485,0.456,0.406, std 0.229,0.224,0.225, layout nhwc, uint8"
KEYWORDS = ("scale", "mean", "std", "layout", "resize", "crop", "antialias", "channels", "input",
            "tokenizer", *LAYOUTS, *ORDERS, *PIXEL_DTYPES)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                   "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
                   "special_tokens_map.json")
MAX_RECORD = 1024 * 1024  # a recorded spec is a few hundred bytes
MAX_SIDE = 16384  # a resize or crop side past this is surely a typo
_NUMBER = r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:e-?\d+)?"


@dataclass(frozen=True)
class Preprocess:
    """A preprocessing spec. `kind` is "image" or "text"; the other fields apply to one kind."""

    kind: str = "image"
    scale: float = 1.0
    scale_text: str = "1"  # as written ("1/255"), so the text form reads back the same
    mean: tuple[float, ...] = ()  # empty: 0 for every channel
    std: tuple[float, ...] = ()  # empty: 1 for every channel
    channel_order: str = "rgb"  # the order the model wants its channels in
    layout: str = "nchw"  # of the raw pixels
    dtype: str = "float32"  # of the raw pixels
    resize: tuple[int, ...] | None = None  # (shorter side,) or (height, width)
    crop: tuple[int, int] | None = None  # (height, width), from the centre
    antialias: bool = True
    channels: int = 3
    input: str | None = None  # the model input it applies to (None: the first)
    tokenizer: str | None = None  # text: the Hugging Face folder
    tokenizer_files: dict[str, str] = field(default_factory=dict)  # text: file name -> sha256
    baked: bool = False  # recorded in an artefact whose graph applies it (not in the text syntax)

    def means(self) -> tuple[float, ...]:
        """One mean per channel."""
        return self.mean * self.channels if len(self.mean) == 1 else self.mean or (0.0,) * self.channels

    def stds(self) -> tuple[float, ...]:
        return self.std * self.channels if len(self.std) == 1 else self.std or (1.0,) * self.channels

    def output_size(self) -> tuple[int, int] | None:
        """The (height, width) the model sees when resize/crop fix it; None when they do not."""
        if self.crop is not None:
            return self.crop
        return (self.resize[0], self.resize[1]) if self.resize and len(self.resize) == 2 else None

    def to_text(self) -> str:
        """The text syntax (parses back to an equal spec, tokenizer file hashes aside)."""
        if self.kind == "text":
            return f"text: tokenizer {self.tokenizer}"
        items = [f"scale {self.scale_text}"] if self.scale != 1 else []
        items += [f"mean {','.join(map(_num, self.mean))}"] if self.mean else []
        items += [f"std {','.join(map(_num, self.std))}"] if self.std else []
        items += [self.channel_order, f"layout {self.layout}", self.dtype]
        items += [f"resize {'x'.join(map(str, self.resize))}"] if self.resize else []
        items += [f"crop {'x'.join(map(str, self.crop))}"] if self.crop else []
        items += [] if self.antialias else ["antialias off"]
        items += [f"channels {self.channels}"] if self.channels != 3 else []
        items += [f"input {self.input}"] if self.input else []
        return "image: " + ", ".join(items)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"text": self.to_text()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def from_json(text: str) -> Preprocess:
    """The spec stored by `Preprocess.to_json`; ExportError when it is not one (checked like text)."""
    try:
        data = json.loads(text)
        parsed = parse_preprocess(data["text"])
        files = data.get("tokenizer_files") or {}
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise TypeError("tokenizer_files is not a mapping of names to hashes")
    except (ValueError, KeyError, TypeError, ExportError) as exc:
        raise ExportError("The recorded preprocessing is damaged and was not read.", str(exc)) from None
    return replace(parsed, tokenizer_files={str(k): v for k, v in files.items()},
                   baked=data.get("baked") is True)


def find_recorded(metadata: dict[str, Any]) -> Preprocess | None:
    """The spec a reader found in a file's metadata (ONNX metadata_props, safetensors
    __metadata__, TorchScript/.pt2 extra files); None when there is none or it is damaged."""
    for place in (metadata.get("metadata_props"), metadata):
        if isinstance(place, dict) and isinstance(place.get(METADATA_KEY), str):
            try:
                return from_json(place[METADATA_KEY])
            except ExportError:
                return None
    return None


def read_extra(archive: Any) -> dict[str, str]:
    """{METADATA_KEY: text} from a TorchScript/.pt2 archive's extra file (a core.formats ZipArchive),
    {} when it has none; the text is checked only when used (find_recorded)."""
    name = f"extra/{EXTRA_FILE}"
    record = archive.get(name)
    if record is None or record.size > MAX_RECORD:
        return {}
    return {METADATA_KEY: archive.read(name).decode("utf-8", "replace")}


# ---------------------------------------------------------------- parsing

def _fail(problem: str, text: str) -> ExportError:
    return ExportError(f"The preprocessing spec is not valid: {problem}; write it like '{EXAMPLE}'.",
                       text)


def parse_preprocess(text: str) -> Preprocess:
    """Parse the text syntax (see the module docstring); raises ExportError naming the problem."""
    head, colon, body = text.partition(":")
    kind = head.strip().lower()
    if not colon or kind not in KINDS:
        raise _fail(f"it must start with 'image:' or 'text:', not '{head.strip()[:40]}'", text)
    if not body.strip():
        raise _fail("it sets nothing after the colon", text)
    items = _items(body, text)
    if kind == "text":
        return _text_spec(items, text)
    fields: dict[str, Any] = {}
    for word, values in items:
        _image_item(word, values, fields, text)
    spec = replace(Preprocess(), **fields)
    _check(spec, text)
    return spec


def _items(body: str, text: str) -> list[tuple[str, list[str]]]:
    """Comma-separated parts; a part that is a bare number continues the previous list."""
    items: list[tuple[str, list[str]]] = []
    for part in (p.strip() for p in body.split(",")):
        if not part:
            raise _fail("it has an empty item (two commas in a row, or one at the end)", text)
        word, _, rest = part.partition(" ")
        continues = re.fullmatch(_NUMBER, part) or (" " not in part and part.lower() not in KEYWORDS)
        if continues and items and items[-1][0] in ("mean", "std"):
            items[-1][1].append(part)
            continue
        if word.lower() not in KEYWORDS:
            raise _fail(f"'{word[:40]}' is not a preprocessing setting (use {', '.join(KEYWORDS[:10])}, "
                        "rgb or bgr, nchw or nhwc, uint8 or float32)", text)
        items.append((word.lower(), [rest.strip()] if rest.strip() else []))
    seen = [w for w, _ in items]
    twice = next((w for w in seen if seen.count(w) > 1), None)
    if twice:
        raise _fail(f"'{twice}' is given twice", text)
    return items


def _text_spec(items: list[tuple[str, list[str]]], text: str) -> Preprocess:
    if len(items) != 1 or items[0][0] != "tokenizer" or not items[0][1]:
        raise _fail("a text spec is 'text: tokenizer FOLDER' (a Hugging Face folder)", text)
    return Preprocess(kind="text", tokenizer=items[0][1][0])


def _image_item(word: str, values: list[str], fields: dict[str, Any], text: str) -> None:
    flags = {**{v: ("layout", v) for v in LAYOUTS}, **{v: ("channel_order", v) for v in ORDERS},
             **{v: ("dtype", v) for v in PIXEL_DTYPES}}
    if word in flags:
        if values:
            raise _fail(f"'{word}' takes no value but was given '{values[0]}'", text)
        key, value = flags[word]
        if key in fields:
            raise _fail(f"two {key.replace('_', ' ')}s are given", text)
        fields[key] = value
        return
    if not values:
        raise _fail(f"'{word}' needs a value", text)
    value = values[0].lower()
    if word == "scale":
        fields["scale"], fields["scale_text"] = _scale(values[0], text), values[0].replace(" ", "")
    elif word in ("mean", "std"):
        fields[word] = tuple(_number(v, word, text) for v in values)
    elif word == "layout":
        if value not in LAYOUTS or "layout" in fields:
            raise _fail(f"'{values[0]}' is not a layout (use nchw or nhwc)", text)
        fields["layout"] = value
    elif word in ("resize", "crop"):
        fields[word] = _size(values[0], word, text)
    elif word == "antialias":
        if value not in ("on", "off"):
            raise _fail(f"antialias is 'on' or 'off', not '{values[0]}'", text)
        fields["antialias"] = value == "on"
    elif word == "channels":
        if not re.fullmatch(r"[1-9]\d?", value):
            raise _fail(f"channels must be a whole number from 1 to 99, not '{values[0]}'", text)
        fields["channels"] = int(value)
    elif word == "input":
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", values[0]):
            raise _fail(f"'{values[0]}' is not an input name", text)
        fields["input"] = values[0]
    else:
        raise _fail(f"'{word}' applies to text specs, not images", text)


def _number(value: str, what: str, text: str) -> float:
    if not re.fullmatch(_NUMBER, value.strip()):
        raise _fail(f"'{value}' in {what} is not a number", text)
    return float(value)


def _scale(value: str, text: str) -> float:
    top, slash, bottom = value.replace(" ", "").partition("/")
    scale = _number(top, "scale", text)
    if slash:
        divisor = _number(bottom, "scale", text)
        scale = scale / divisor if divisor else math.inf
    if not math.isfinite(scale) or scale <= 0:
        raise _fail(f"scale must be a positive number such as 1/255, not '{value}'", text)
    return scale


def _size(value: str, what: str, text: str) -> tuple[int, ...]:
    match = re.fullmatch(r"(\d+)(?:\s*x\s*(\d+))?", value)
    sides = tuple(int(g) for g in match.groups() if g is not None) if match else ()
    if not sides or not all(0 < s <= MAX_SIDE for s in sides):
        raise _fail(f"{what} is a size N or HxW (whole numbers from 1 to {MAX_SIDE}), not '{value}'",
                    text)
    return sides if what == "resize" or len(sides) == 2 else (sides[0], sides[0])


def _check(spec: Preprocess, text: str) -> None:
    for what, values in (("mean", spec.mean), ("std", spec.std)):
        if len(values) not in (0, 1, spec.channels):
            raise _fail(f"{what} has {len(values)} values but the image has {spec.channels} channels "
                        f"(give 1 or {spec.channels})", text)
    if any(s == 0 for s in spec.std):
        raise _fail("std must not be 0 (it divides)", text)
    if spec.channel_order == "bgr" and spec.channels != 3:
        raise _fail(f"bgr needs 3 channels, not {spec.channels}", text)
    if spec.crop and spec.resize:
        smallest = (spec.resize[0],) * 2 if len(spec.resize) == 1 else spec.resize
        if spec.crop[0] > smallest[0] or spec.crop[1] > smallest[1]:
            raise _fail(f"the crop {'x'.join(map(str, spec.crop))} is bigger than the resized "
                        f"image ({'x'.join(map(str, spec.resize))})", text)


def check_against_input(spec: Preprocess, input_spec: Any) -> None:
    """ExportError when `spec` cannot feed `input_spec` (an InputSpec): not four dims, a channel
    count or an output size outside the input's dims."""
    if spec.kind != "image":
        return
    where = f"the input '{input_spec.name}'"
    dims = input_spec.dims
    if len(dims) != 4:
        raise _fail(f"{where} has {len(dims)} dims, but an image input has four (N, C, H, W)",
                    spec.to_text())
    if dims[1].name is None and dims[1].value != spec.channels:
        raise _fail(f"it describes {spec.channels} channels but {where} has {dims[1].value}",
                    spec.to_text())
    size = spec.output_size()
    if size is None and spec.resize:  # only the shorter side is known: one side must take it
        side = spec.resize[0]
        if not (_fits(dims[2], side) or _fits(dims[3], side)):
            raise _fail(f"resize {side} fits neither the height ({dims[2].to_text()}) nor the "
                        f"width ({dims[3].to_text()}) of {where}", spec.to_text())
    for axis, side in zip((2, 3), size or (), strict=False):
        if not _fits(dims[axis], side):
            raise _fail(f"the image side {side} after resize/crop is outside the "
                        f"{'height' if axis == 2 else 'width'} ({dims[axis].to_text()}) of {where}",
                        spec.to_text())


def _fits(dim: Any, side: int) -> bool:
    return dim.within(side) if dim.name is not None else dim.value == side


def with_tokenizer_files(spec: Preprocess) -> Preprocess:
    """A text spec with the sha256 of its folder's tokenizer files filled in; ExportError when the
    folder is missing or holds none."""
    import hashlib
    from pathlib import Path

    if spec.kind != "text" or spec.tokenizer is None:
        return spec
    folder = Path(spec.tokenizer)
    if not folder.is_dir():
        raise ExportError(f"The tokenizer folder '{folder}' does not exist.")
    files = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
             for name in TOKENIZER_FILES if (folder / name).is_file()}
    if not files:
        raise ExportError(f"The folder '{folder}' has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}"
                          ", ...).")
    return replace(spec, tokenizer=folder.name, tokenizer_files=files)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)
