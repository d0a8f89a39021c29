"""Checkpoint Studio desktop app (PySide6). Holds no checkpoint logic: views call `core` through
`gui.worker.Job` and render its result dataclasses."""
