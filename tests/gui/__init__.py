"""pytest-qt tests of the desktop app (offscreen)."""
