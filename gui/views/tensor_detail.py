"""Tensor detail panel: value statistics and a histogram of the selected tensor, computed on a worker
by `core.stats.tensor_stats` (which imports torch only then)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QElidingLabel

from core.model import Checkpoint, TensorInfo
from core.report import human_bytes, shape_text
from core.stats import TensorStats, tensor_stats
from gui.worker import Job

STAT_ROWS = ("Elements", "Min", "Max", "Mean", "Std", "Zeros", "NaN", "Inf")
LOG_FLOOR = -0.3  # log10(0.5): in log scale the bars start below 1, so a bin of one value shows


class TensorDetailView(QWidget):
    stats_ready = Signal(object)  # TensorStats
    stats_failed = Signal(str)

    def __init__(self, stats_func: Callable[..., TensorStats] = tensor_stats,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._stats_func = stats_func
        self._checkpoint: Checkpoint | None = None
        self._job: Job | None = None
        self._plot: Any = None
        self.last_stats: TensorStats | None = None
        self._build()
        self.show_tensor(None)

    def _build(self) -> None:
        self.title = QElidingLabel()
        font = QFont(self.title.font())
        font.setBold(True)
        self.title.setFont(font)
        self.subtitle = QLabel()
        self.status = QLabel(wordWrap=True)
        self.progress = QProgressBar(textVisible=False, maximumHeight=8)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        busy = QHBoxLayout()
        busy.addWidget(self.progress, 1)
        busy.addWidget(self.cancel_button)
        self.busy = QWidget()
        self.busy.setLayout(busy)
        busy.setContentsMargins(0, 0, 0, 0)
        self.form = QFormLayout()
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.values: dict[str, QLabel] = {}
        for row in STAT_ROWS:
            label = QLabel(textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
            self.values[row] = label
            self.form.addRow(f"{row}:", label)
        self.plot_box = QWidget()  # holds the histogram; takes the spare height either way
        self.plot_area = QVBoxLayout(self.plot_box)
        self.plot_area.setContentsMargins(0, 4, 0, 0)
        self.log_counts = QCheckBox("Log count", visible=False)
        self.log_counts.setToolTip("Counts on a log scale: rare values in the tails become visible.")
        self.log_counts.toggled.connect(lambda _on: self._show_histogram(self.last_stats))
        self.plot_area.addWidget(self.log_counts, 0, Qt.AlignmentFlag.AlignRight)
        layout = QVBoxLayout(self)
        for widget in (self.title, self.subtitle, self.status, self.busy):
            layout.addWidget(widget)
        layout.addLayout(self.form)
        layout.addWidget(self.plot_box, 1)

    def set_checkpoint(self, checkpoint: Checkpoint | None) -> None:
        self._checkpoint = checkpoint
        self.show_tensor(None)

    def show_tensor(self, info: TensorInfo | None, section: str | None = None) -> None:
        """Show `info` and start computing its statistics (cancelling any previous run)."""
        self.cancel()
        self.last_stats = None
        self._set_values({})
        self._show_histogram(None)
        if info is None:
            self.title.setText("No tensor selected")
            self.subtitle.setText("")
            self._set_status("Select a tensor to see its values.")
            return
        self.title.setText(info.name)
        quantized = f" · {info.quantization.describe()}" if info.quantization else ""
        self.subtitle.setText(f"{shape_text(info.shape)} · {info.dtype} · "
                              f"{human_bytes(info.nbytes)} · {info.role}{quantized}")
        if self._checkpoint is None or info.numel == 0:
            self._set_status("This tensor has no values." if info.numel == 0 else "")
            return
        self._start(info, section)

    def _start(self, info: TensorInfo, section: str | None) -> None:
        job = Job(self._stats_func, self._checkpoint, info.name, section=section,
                  bins=histogram_bins(info.numel), parent=self)
        job.progress.connect(self._on_progress)
        job.succeeded.connect(self._on_stats)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        job.finished.connect(self._on_finished)
        self._job = job
        self._set_status("Computing statistics…", busy=True)
        job.start()

    def cancel(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            for signal in (job.progress, job.succeeded, job.failed, job.cancelled):
                signal.disconnect()
            job.cancel()
            self._set_status("Cancelled.")

    def is_busy(self) -> bool:
        return self._job is not None

    def _on_cancelled(self) -> None:
        self._set_status("Cancelled.")

    def _on_finished(self) -> None:
        job = self.sender()
        if job is self._job:
            self._job = None
            self.busy.setVisible(False)
        if job is not None:
            job.deleteLater()

    def _on_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(1000 * done / total) if total else 0)
        self.status.setText(f"{text}…" if text else "Computing statistics…")

    def _on_stats(self, stats: TensorStats) -> None:
        self.last_stats = stats
        self._set_status("")
        self._set_values(_stat_texts(stats))
        self._show_histogram(stats)
        self.stats_ready.emit(stats)

    def _on_failed(self, message: str, details: str) -> None:
        self._set_status(message)
        self.status.setToolTip(details)
        self.stats_failed.emit(message)

    def _set_status(self, text: str, busy: bool = False) -> None:
        self.status.setText(text)
        self.status.setToolTip("")
        self.status.setVisible(bool(text))
        self.busy.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)

    def _set_values(self, texts: dict[str, str]) -> None:
        for row, label in self.values.items():
            label.setText(texts.get(row, "—"))

    def _show_histogram(self, stats: TensorStats | None) -> None:
        if self._plot is None:
            if stats is None:
                return
            self._plot = _make_plot(self)
            self.plot_area.addWidget(self._plot)
        self._plot.clear()
        log = self.log_counts.isChecked()
        self._plot.setLogMode(y=log)
        self._plot.setLabel("left", "count (log)" if log else "count")
        if stats is not None and stats.hist_counts:
            import pyqtgraph as pg

            color = self.palette().color(QPalette.ColorRole.Highlight)
            fill = pg.mkBrush(color.red(), color.green(), color.blue(), 140)
            self._plot.plot(stats.hist_edges, stats.hist_counts, stepMode="center",
                            fillLevel=LOG_FLOOR if log else 0, brush=fill, pen=pg.mkPen(color, width=1))
        self._plot.setVisible(stats is not None)
        self.log_counts.setVisible(stats is not None)


def _make_plot(widget: QWidget) -> Any:
    import pyqtgraph as pg  # loaded with the first histogram, not at start-up

    palette = widget.palette()
    plot = pg.PlotWidget(background=palette.color(QPalette.ColorRole.Base))
    text = palette.color(QPalette.ColorRole.Text)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(text)
        axis.setTextPen(text)
        axis.enableAutoSIPrefix(False)
    plot.setLabel("bottom", "value")
    plot.setLabel("left", "count")
    plot.setMenuEnabled(False)
    plot.setMinimumHeight(160)
    return plot


def histogram_bins(numel: int) -> int:
    """About √n bins, between 8 and 64: small tensors get a readable shape, not spikes."""
    return max(8, min(64, int(numel ** 0.5)))


def _stat_texts(s: TensorStats) -> dict[str, str]:
    def pct(n: int) -> str:
        return f"{n:,}" if not n or not s.numel else f"{n:,} ({100 * n / s.numel:.2g}%)"

    def num(v: float | None) -> str:
        return "—" if v is None else f"{v:.6g}"

    inf = f"{s.inf:,} (+{s.posinf:,} / −{s.neginf:,})" if s.inf else "0"
    return {"Elements": f"{s.numel:,}", "Min": num(s.min), "Max": num(s.max),
            "Mean": num(s.mean), "Std": num(s.std), "Zeros": pct(s.zeros), "NaN": pct(s.nan),
            "Inf": inf}
