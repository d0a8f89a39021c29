"""The few errors callers act on. `message` is one plain sentence; `details` the technical part."""

from __future__ import annotations

from typing import Any


class CheckpointError(Exception):
    """Base of every error a user may see."""

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message if not self.details else f"{self.message} ({self.details})"


class UnsupportedFormat(CheckpointError):
    """The file is readable but is not a format we know."""


class CorruptFile(CheckpointError):
    """The file claims to be a known format but its contents are broken or lie."""


class UnsafeContent(CheckpointError):
    """The file references code; carries the findings so a caller can show them."""

    def __init__(self, message: str, findings: list[Any], details: str | None = None) -> None:
        super().__init__(message, details)
        self.findings = findings


class Cancelled(CheckpointError):
    """The user cancelled a long job; nothing partial was left behind."""

    def __init__(self, message: str = "Cancelled.", details: str | None = None) -> None:
        super().__init__(message, details)


class ExportError(CheckpointError):
    """An export target failed."""


class CheckFailed(CheckpointError):
    """A parity or latency check could not run."""
