"""The export panel's targets: one check box per core.export target with its options, and the targets
that cannot work on this machine greyed out with the reason (core.capabilities, the data of
`ckpt-studio doctor`). Finding out looks for packages, libraries and a compiler on disk, so it runs
once per process on the worker (`TargetProbe`), never on the GUI thread; the boxes stay usable until
the answer comes."""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QObject, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from gui.views.export_capabilities import show_capabilities
from gui.views.parts import hbox
from gui.worker import Job

TARGET_LABELS = {"onnx": "ONNX", "torchscript": "TorchScript", "pt2": ".pt2 (torch.export)",
                 "aoti": "AOTInductor package (.pt2, compiled)", "executorch": "ExecuTorch (.pte)"}
UNAVAILABLE = "Not available here: "


def target_problems() -> dict[str, str | None]:
    """Each export target -> why it cannot work here (None when it can), as `doctor` reports it:
    ExecuTorch judged by its installed files (importing it takes 10 to 40 s; the export imports it
    and says so in one sentence when it does not load)."""
    from core.capabilities import targets_and_runners

    return {c.name: c.reason for c in targets_and_runners(probe=False) if c.kind == "target"}


class TargetProbe(QObject):
    """Asks core.capabilities once, on the worker; `ready` carries target -> reason (or None)."""

    ready = Signal(object)
    _shared: TargetProbe | None = None

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.problems: dict[str, str | None] | None = None
        self.error = ""
        self.job: Job | None = None

    @classmethod
    def shared(cls) -> TargetProbe:
        """The probe of this process (the answer does not change while the app runs)."""
        if cls._shared is None:
            cls._shared = cls(QCoreApplication.instance())
        return cls._shared

    def request(self) -> None:
        if self.problems is not None or self.job is not None:
            return
        job = self.job = Job(target_problems, parent=self)
        job.succeeded.connect(self._on_ready)
        job.failed.connect(self._on_failed)
        job.finished.connect(job.deleteLater)
        job.start()

    def is_running(self) -> bool:
        return self.job is not None

    def _on_ready(self, problems: dict[str, str | None]) -> None:
        self.job, self.problems = None, problems
        self.ready.emit(problems)

    def _on_failed(self, message: str, details: str) -> None:
        self.job, self.error = None, message
        self.problems = {}
        self.ready.emit({})


class TargetsBox(QGroupBox):
    """The target check boxes (`boxes`, by core.export target name) and their options."""

    def __init__(self, probe: TargetProbe | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Targets", parent)
        self.boxes = {name: QCheckBox(label) for name, label in TARGET_LABELS.items()}
        for name in ("onnx", "torchscript"):
            self.boxes[name].setChecked(True)
        self.opset = QSpinBox(minimum=6, maximum=23, value=6, specialValueText="default opset")
        self.onnx_exporter = QComboBox()
        self.onnx_exporter.addItems(["auto", "dynamo", "legacy"])
        self.onnx_exporter.setToolTip("auto: the torch.export-based exporter, the legacy "
                                      "TorchScript-based one if that fails")
        self.ts_mode = QComboBox()
        self.ts_mode.addItems(["trace", "script"])
        self.int8 = QCheckBox("Dynamic int8 (extra ONNX / TorchScript artefacts)")
        self.notes = {name: QLabel(wordWrap=True, visible=False) for name in TARGET_LABELS}
        for note in self.notes.values():
            note.setStyleSheet("color: palette(placeholder-text);")
        self.checking = QLabel("Checking which targets work here…")
        self.checking.setStyleSheet("color: palette(placeholder-text);")
        self.details = QPushButton("What works here…")
        self.details.setToolTip("The capability report (as `ckpt-studio doctor`)")
        self.details.clicked.connect(lambda: show_capabilities(self.window()))
        self._lay_out()
        self.probe = probe or TargetProbe.shared()
        self.probe.ready.connect(self.set_problems)
        if self.probe.problems is not None:
            self.set_problems(self.probe.problems)
        else:
            self.probe.request()

    def _lay_out(self) -> None:
        form = QFormLayout(self)
        options = {"onnx": hbox(QLabel("opset"), self.opset, QLabel("exporter"), self.onnx_exporter,
                                stretch_at=4),
                   "torchscript": hbox(QLabel("mode"), self.ts_mode, stretch_at=2)}
        for name, box in self.boxes.items():
            if name in options:
                form.addRow(box, options[name])
            else:
                form.addRow(box)
            form.addRow(self.notes[name])
        form.addRow(self.int8)
        form.addRow(hbox(self.checking, self.details, grow=self.checking))

    def targets(self) -> list[str]:
        return [name for name, box in self.boxes.items() if box.isChecked() and box.isEnabled()]

    def set_problems(self, problems: dict[str, str | None]) -> None:
        """Grey out each target that cannot work here; the reason is its tooltip and note."""
        self.checking.setVisible(bool(self.probe.error))
        self.checking.setText(f"Could not check which targets work here: {self.probe.error}")
        for name, box in self.boxes.items():
            reason = problems.get(name)
            if reason:
                box.setChecked(False)
            box.setEnabled(not reason)
            box.setToolTip(UNAVAILABLE + reason if reason else "")
            self.notes[name].setText(reason or "")
            self.notes[name].setVisible(bool(reason))
