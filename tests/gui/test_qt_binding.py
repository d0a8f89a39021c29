"""The Qt binding keeps Python's reference counts right when a signal carries True or False.

PySide6 6.12.0 dropped one reference to True on every `Signal.emit(True)`. pyqtgraph emits such
signals ~80 times per plot, so after ~45 diffs shown in one session Python aborted with "Fatal
Python error: bool_dealloc". pyproject.toml excludes that release; this test catches it (or a
later one like it) in whatever PySide6 is installed. On Python 3.12+ True is immortal and its
count does not move, so there the test holds trivially, as does the app.
"""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject, Signal


class Emitter(QObject):
    anything = Signal(object)
    flag = Signal(bool)
    pair = Signal(object, object)


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("signal", ["anything", "flag", "pair"])
def test_emitting_a_bool_keeps_its_reference_count(qapp, signal, value):
    emitter = Emitter()
    received = []
    getattr(emitter, signal).connect(lambda *args: received.append(args))
    emit = getattr(emitter, signal).emit
    before = sys.getrefcount(value)
    for _ in range(200):
        emit(value, 1) if signal == "pair" else emit(value)
    received.clear()  # the slot's own references to `value` go
    assert sys.getrefcount(value) >= before, \
        f"{signal}.emit({value}) loses references to {value}: Python will abort once it has none"
