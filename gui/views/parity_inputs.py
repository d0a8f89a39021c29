"""The checks panel's parity settings beyond atol/rtol, as `ckpt-studio check parity` has them:
per-output tolerances (`--tol OUTPUT=ATOL,RTOL`, parsed by the CLI's own parser), .npz files of
inputs tested instead of generated ones (`--inputs-npz`, read by core.checks.common.load_cases on the
worker) and a folder for the failing cases (`--save-dir`, written by core as .npz files that the
input-files field reads back), plus the parity job that passes them on to
core.checks.parity.check_parity."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QLineEdit, QWidget

from gui.views.parts import PathField

if TYPE_CHECKING:  # pragma: no cover
    from core.checks.parity import ParityResult
    from core.inputs import InputSpec
    from core.progress import Progress

TOLERANCES_HINT = "optional: logits=1e-3,1e-3; aux=1e-2,0"
TOLERANCES_TIP = ("Tolerances for single outputs, as OUTPUT=ATOL,RTOL (like the CLI's --tol), ';' "
                  "between outputs. The others use atol / rtol above.")
NPZ_HINT = "optional, parity only: .npz files of inputs to test instead (one case per file)"
NPZ_TIP = ("Parity runs one case per .npz file instead of the generated inputs (like the CLI's "
           "--inputs-npz): arrays named like the model's inputs, or 'input.NAME' as in a saved "
           "failing case. The spec and shapes are then not used for parity.")
NPZ_FILTER = "NumPy archives (*.npz);;All files (*)"
SAVE_HINT = "optional: a folder for the failing cases (.npz), e.g. parity-failures"
SAVE_TIP = ("Each failing input shape is saved there as a .npz file with its inputs and both models' "
            "outputs (like the CLI's --save-dir). Pick those files under 'Input files' to test "
            "exactly those cases again. Empty: nothing is saved.")


def parse_tolerances(text: str) -> dict[str, tuple[float, float]]:
    """'logits=1e-3,1e-3; aux=1e-2,0' -> {'logits': (0.001, 0.001), 'aux': (0.01, 0.0)}; each part
    goes through the CLI's --tol parser, so both accept and refuse the same text."""
    from core.checks.parity import parse_tolerances as parse_parts

    return parse_parts([p.strip() for p in re.split(r"[;\n]", text) if p.strip()])


def tolerances_field() -> QLineEdit:
    edit = QLineEdit(placeholderText=TOLERANCES_HINT, clearButtonEnabled=True)
    edit.setToolTip(TOLERANCES_TIP)
    return edit


class NpzField(PathField):
    """One or more .npz files, ';' between them; Browse picks several at once."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("file", NPZ_HINT, NPZ_FILTER, parent)
        self.setToolTip(NPZ_TIP)

    def paths(self) -> list[str]:
        return [p.strip() for p in self.text().split(";") if p.strip()]

    def choose(self) -> None:
        settings = QSettings()
        start = (self.paths() or [str(settings.value("last_dir", ""))])[0]
        paths, _ = QFileDialog.getOpenFileNames(self, "Choose input files", start, self.file_filter)
        if paths:
            settings.setValue("last_dir", str(Path(paths[0]).parent))
            self.set_text("; ".join(paths))


class SaveDirField(PathField):
    """The folder failing cases are saved to (a folder picker); '' when none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("dir", SAVE_HINT, "", parent)
        self.setToolTip(SAVE_TIP)

    def folder(self) -> str | None:
        """The folder as an absolute path ('~' expanded), None when empty. A path that exists and
        is not a folder is refused before anything runs."""
        from core.errors import CheckFailed

        text = self.text()
        if not text:
            return None
        path = Path(text).expanduser().absolute()
        if path.exists() and not path.is_dir():
            raise CheckFailed(f"'{path}' is a file, not a folder; choose a folder to save the "
                              "failing cases in.")
        return str(path)


def saved_cases(result: ParityResult) -> list[str]:
    """The .npz files core saved, one per failing case (none when no folder was given)."""
    return [case.saved for case in result.cases if case.saved]


def saved_text(result: ParityResult) -> str:
    """'2 failing cases saved to /path/folder.' ('' when nothing was saved)."""
    saved = saved_cases(result)
    if not saved:
        return ""
    n = len(saved)
    return f"{n} failing case{'s' if n != 1 else ''} saved to {Path(saved[0]).parent}."


def run_parity(reference: str, candidate: str, trust: bool, specs: list[InputSpec] | None,
               points: list[dict[str, int]] | None, atol: float | None, rtol: float | None,
               tolerances: dict[str, tuple[float, float]] | None = None,
               npz: list[str] | None = None, save_dir: str | None = None,
               kwargs: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
               progress: Progress | None = None) -> ParityResult:
    """gui.jobs.run_parity with the CLI's --tol, --inputs-npz, --save-dir and --kwargs: the .npz
    cases (when given) replace the generated inputs; failing cases are saved to `save_dir` (when
    given); `kwargs` (a model folder's task / pooling) go to each side's runner."""
    from core.checks.common import load_cases
    from core.checks.parity import check_parity
    from core.runtime import build_runner

    cases = load_cases(npz) if npz else None
    ref = build_runner(reference, trust, kwargs=kwargs[0])
    cand = build_runner(candidate, trust, kwargs=kwargs[1])
    return check_parity(ref, cand, specs, points=points, cases=cases, atol=atol, rtol=rtol,
                        tolerances=tolerances, save_dir=save_dir, progress=progress)
