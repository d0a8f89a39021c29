"""What a cast to float16 or bfloat16 does to the values: overflow, flush to zero, rounding error.

    report = precision_report(checkpoint, "fp16", ConvertOptions(drop=("*.num_batches_tracked",)))
    report.overflowing          # names of the tensors with values that would become infinity

The counts come from the cast itself, one chunk at a time: `PrecisionCounter.add` gets the
source values and the 16-bit output the cast produced, so the report says exactly what a
conversion writes. A conversion counts during its own cast (no second read); `precision_report`
runs the same cast without writing, for a panel that shows the risks before the user confirms.
Per chunk only the bounds of |x| are taken (float32 -> bfloat16 gets them from the cast itself);
the rarer counts (infinity, zero, subnormal) are only taken when the bounds say the chunk has
any, and the mean rounding error comes from a sample: it costs a few percent of the cast.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from core.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from core.convert.transforms import ConvertOptions, Item
    from core.model import Checkpoint
    from core.progress import Progress

REPORT_NAMES = 10  # tensors named in a refusal; the rest are counted
SAMPLE = 64  # the rounding error of one value in 64 makes the mean (see count_chunk)
EXACT = 1 << 14  # a chunk of up to this many values is measured whole


@dataclass(frozen=True)
class Format:
    """A 16-bit float type's limits, as values and as the bits of |x|."""

    max_finite: float
    smallest_normal: float
    inf_bits: int  # |x| bits of infinity; above it: NaN
    normal_bits: int  # |x| bits of the smallest normal value; below it: zero or subnormal


FORMATS = {
    "float16": Format(65504.0, 2.0 ** -14, 0x7C00, 0x0400),
    "bfloat16": Format(3.3895313892515355e38, 2.0 ** -126, 0x7F80, 0x0080),
}


@dataclass
class TensorPrecision:
    """One cast tensor: how many of its values the cast overflows, flushes or makes subnormal."""

    name: str  # output name
    source_dtype: str
    numel: int
    overflow: int = 0  # finite values that become +-inf
    flushed: int = 0  # nonzero finite values that become zero
    subnormal: int = 0  # values that become subnormal
    max_abs: float | None = None  # largest finite |x| in the source
    max_rel_error: float = 0.0  # max |cast(x) - x| / |x| over finite nonzero x with a finite cast
    # mean_rel_error: the same over a sample, one value in SAMPLE (count_chunk)
    rel_error_sum: float = field(default=0.0, repr=False)
    rel_error_count: int = field(default=0, repr=False)

    @property
    def mean_rel_error(self) -> float:
        return self.rel_error_sum / self.rel_error_count if self.rel_error_count else 0.0

    @property
    def at_risk(self) -> bool:
        return bool(self.overflow or self.flushed or self.subnormal)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source_dtype": self.source_dtype, "numel": self.numel,
                "overflow": self.overflow, "flushed": self.flushed, "subnormal": self.subnormal,
                "max_abs": self.max_abs, "max_rel_error": self.max_rel_error,
                "mean_rel_error": self.mean_rel_error}


@dataclass
class PrecisionReport:
    dtype: str  # "float16" | "bfloat16"
    max_finite: float
    smallest_normal: float
    tensors: list[TensorPrecision]

    def _total(self, attr: str) -> int:
        return sum(getattr(t, attr) for t in self.tensors)

    @property
    def numel(self) -> int:
        return self._total("numel")

    @property
    def overflow(self) -> int:
        return self._total("overflow")

    @property
    def flushed(self) -> int:
        return self._total("flushed")

    @property
    def subnormal(self) -> int:
        return self._total("subnormal")

    @property
    def max_rel_error(self) -> float:
        return max((t.max_rel_error for t in self.tensors), default=0.0)

    @property
    def mean_rel_error(self) -> float:
        count = self._total("rel_error_count")
        return self._total("rel_error_sum") / count if count else 0.0

    @property
    def overflowing(self) -> list[str]:
        return [t.name for t in self.tensors if t.overflow]

    def to_dict(self) -> dict[str, Any]:
        totals = {"tensors": len(self.tensors), "numel": self.numel, "overflow": self.overflow,
                  "flushed": self.flushed, "subnormal": self.subnormal,
                  "max_rel_error": self.max_rel_error, "mean_rel_error": self.mean_rel_error}
        return {"dtype": self.dtype, "max_finite": self.max_finite,
                "smallest_normal": self.smallest_normal, "totals": totals,
                "tensors": [t.to_dict() for t in self.tensors]}


class OverflowFound(Exception):
    """Raised inside a cast the moment a value overflows and overflow was not allowed."""


class OverflowRefused(CheckpointError):
    """A cast would turn values into infinity; `tensors` names them. Nothing was written."""

    def __init__(self, report: PrecisionReport) -> None:
        rows = [t for t in report.tensors if t.overflow]
        named = ", ".join(f"'{t.name}' ({t.overflow:,} value{'s' * (t.overflow != 1)}, largest "
                          f"{t.max_abs:.4g})" for t in rows[:REPORT_NAMES])
        more = f" and {len(rows) - REPORT_NAMES} more" if len(rows) > REPORT_NAMES else ""
        instead = "cast to bf16 (it keeps float32's range)" if report.dtype == "float16" else \
            "keep float32"
        super().__init__(
            f"Casting to {report.dtype} would turn {report.overflow:,} value(s) larger than "
            f"{report.max_finite:.6g} into infinity, so nothing was written; {instead}, or allow "
            f"it with --allow-overflow. Tensors: {named}{more}.", "\n".join(t.name for t in rows))
        self.tensors = [t.name for t in rows]
        self.report = report


class PrecisionCounter:
    """Collects the counts of every cast chunk of one conversion (or one `precision_report`)."""

    def __init__(self, dtype: str, *, allow_overflow: bool = True) -> None:
        self.dtype, self.format = dtype, FORMATS[dtype]
        self.allow_overflow = allow_overflow
        self.rows: dict[str, TensorPrecision] = {}

    def covers(self, item: Item) -> bool:
        return item.cast and item.dtype == self.dtype

    def add(self, item: Item, source: Any, output: Any, bounds: list[int] | None = None) -> None:
        """Count one chunk: `source` the bytes before the cast (item.source.dtype), `output` the
        bytes the cast wrote (`self.dtype`), `bounds` what `cast_bytes` found (see count_chunk)."""
        import numpy as np

        from core.convert.cast import float_values

        row = self.rows.get(item.name)
        if row is None:
            row = self.rows[item.name] = TensorPrecision(item.name, item.source.dtype, item.source.numel)
        values = float_values(source, item.source.dtype)
        if values.size:
            count_chunk(row, values, np.frombuffer(output, dtype=np.uint16), self.format, bounds)
        if row.overflow and not self.allow_overflow:
            raise OverflowFound(item.name)

    def add_tensors(self, item: Item, source: Any, output: Any) -> None:
        """The same for a whole torch tensor and its cast (the torch read path)."""
        from core.convert.cast import tensor_bytes
        from core.convert.stream import CAST_CHUNK

        src, out = tensor_bytes(source), tensor_bytes(output)
        elements = max(CAST_CHUNK // max(source.element_size(), 1), 1)
        src_step, out_step = elements * source.element_size(), elements * 2
        for at in range(0, max(source.numel(), 0), elements):
            index = at // elements
            self.add(item, src[index * src_step:(index + 1) * src_step],
                     out[index * out_step:(index + 1) * out_step])

    def report(self, items: list[Item] | None = None) -> PrecisionReport:
        """Rows in the order of `items` (default: the order they were counted)."""
        rows = list(self.rows.values()) if items is None else \
            [self.rows[i.name] for i in items if i.name in self.rows]
        return PrecisionReport(self.dtype, self.format.max_finite, self.format.smallest_normal, rows)


def count_chunk(row: TensorPrecision, values: Any, bits: Any, fmt: Format,
                bounds: list[int] | None = None) -> None:
    """Add one chunk: `values` the source floats, `bits` their cast as uint16; `bounds` the
    smallest and largest |x| of float32 `values` as bits, when the cast found them.

    The counts are exact. The bounds come first (from the cast, else two reductions of the
    source and one of the output); only a chunk whose bounds reach infinity, NaN or the
    subnormal range pays for the masks. The rounding error is measured exactly on every value
    that becomes subnormal or zero, and on the first 1/`SAMPLE` of a chunk of more than `EXACT`
    values (a normal result is never off by more than half a unit in the last place: 2^-8
    relative for bfloat16, 2^-11 for float16).
    """
    import numpy as np

    work = np.float64 if values.dtype == np.float64 else np.float32
    source = values if values.dtype == work else values.astype(work)
    high_risk, low_risk, largest = _risks(source, bits, fmt, bounds)
    magnitude = bits & np.uint16(0x7FFF) if high_risk or low_risk else None
    if high_risk:
        out_inf = int(np.count_nonzero(magnitude == fmt.inf_bits))
        if out_inf:
            row.overflow += out_inf - int(np.count_nonzero(np.isinf(source)))
        finite = np.abs(source[np.isfinite(source)])
        largest = float(finite.max()) if finite.size else -1.0
    row.max_abs = _larger(row.max_abs, largest)
    if low_risk:  # the values that come out zero or subnormal, usually few: counted by index
        small = np.flatnonzero(magnitude < fmt.normal_bits)
        small_source, out_zero = source[small], magnitude[small] == 0
        nonzero = small_source != 0
        row.subnormal += small.size - int(np.count_nonzero(out_zero))
        row.flushed += int(np.count_nonzero(out_zero & nonzero))
        _add_errors(row, small_source[nonzero], bits[small[nonzero]], fmt, work, counted=False)
    size = source.size if source.size <= EXACT else source.size // SAMPLE
    sample, sample_bits = source[:size], bits[:size]  # contiguous: a strided view costs as much as all
    if magnitude is not None:
        keep = np.isfinite(sample) & (sample != 0) & (magnitude[:size] < fmt.inf_bits)
        sample, sample_bits = sample[keep], sample_bits[keep]
    _add_errors(row, sample, sample_bits, fmt, work, counted=True)


def _risks(source: Any, bits: Any, fmt: Format, bounds: list[int] | None) -> tuple[bool, bool, float]:
    """(may overflow or hold NaN/inf, may flush or land in the subnormal range, largest |x|)."""
    import numpy as np

    if bounds and source.dtype == np.float32:
        low, high = (np.array(bounds, dtype=np.uint32).view(np.float32)).tolist()
        return not high < fmt.max_finite, low < fmt.smallest_normal, high
    top, bottom = float(source.max()), float(source.min())  # NaN if any value is NaN
    largest = max(top, -bottom)
    low_risk = int((bits & np.uint16(0x7FFF)).min()) < fmt.normal_bits
    return not largest < fmt.max_finite, low_risk, largest


def _add_errors(row: TensorPrecision, source: Any, bits: Any, fmt: Format, work: Any, *,
                counted: bool) -> None:
    """Relative errors of finite nonzero `source` values whose cast `bits` is finite; `counted`
    ones make the mean (the sample), all of them the max."""
    import numpy as np

    if not source.size:
        return
    error = _decoded(bits, fmt, work)
    np.subtract(error, source, out=error)  # both finite and the source nonzero: no NaN, no warning
    np.divide(error, source, out=error)
    np.abs(error, out=error)
    row.max_rel_error = max(row.max_rel_error, float(error.max()))
    if counted:
        row.rel_error_sum += float(error.sum())
        row.rel_error_count += error.size


def _larger(current: float | None, new: float) -> float | None:
    if new < 0:
        return current
    return new if current is None else max(current, new)


def _decoded(bits: Any, fmt: Format, work: Any) -> Any:
    """The 16-bit output as `work` floats (a new array the caller may overwrite)."""
    import numpy as np

    if fmt is FORMATS["bfloat16"]:
        wide = np.left_shift(bits, 16, dtype=np.uint32).view(np.float32)
        return wide if work == np.float32 else wide.astype(work)
    return bits.view(np.float16).astype(work)


def precision_report(checkpoint: Checkpoint, dtype: str, options: ConvertOptions | None = None, *,
                     progress: Progress | None = None) -> PrecisionReport:
    """What casting `checkpoint` (as `options` select and rename it) to `dtype` does to its values,
    tensor by tensor; reads each cast tensor once, a chunk at a time, and writes nothing."""
    from core.convert.stream import Meter, SourceReader
    from core.convert.transforms import ConvertOptions, build_plan, target_dtype

    target = target_dtype(dtype)
    options = replace(options or ConvertOptions(), dtype=dtype)
    if target not in FORMATS:
        return PrecisionReport(target or "", 0.0, 0.0, [])
    plan = build_plan(checkpoint, options)
    counter = PrecisionCounter(target)
    items = [i for i in plan.items if counter.covers(i)]
    meter = Meter(progress, sum(i.nbytes for i in items))
    with SourceReader(precision=counter) as reader:
        for item in items:
            for part in reader.chunks(item):
                meter.add(len(part), f"checking {item.name}")
            if not item.nbytes:
                meter.add(0, f"checking {item.name}")
    return counter.report(items)
