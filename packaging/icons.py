"""Render the app icon (resources/icons/ckpt-studio.svg) to PNG sizes, .ico and .icns with Qt.

Runs offscreen (no display needed). `build.py` calls `render_all(out_dir)` at build time, so no
generated image is committed; run it alone to look at the result:

    python packaging/icons.py build/icons
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "icons" / "ckpt-studio.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZE = 256  # Qt's ico writer stores one image; Windows scales it
ICNS_SIZE = 512


def _app() -> object:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.instance() or QGuiApplication([sys.argv[0]])


def render(size: int) -> object:
    """The SVG as a QImage of size x size (transparent background)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise RuntimeError(f"Qt could not read {SVG}")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def save(image: object, path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(path), fmt):  # type: ignore[attr-defined]
        raise RuntimeError(f"Qt could not write {path} (no '{fmt}' image plugin?)")
    return path


def render_all(out_dir: Path) -> dict[str, Path]:
    """PNG sizes as hicolor/<n>x<n>/apps/ckpt-studio.png, plus ckpt-studio.ico / .icns."""
    _app()
    written = {}
    for size in PNG_SIZES:
        written[f"{size}"] = save(render(size), out_dir / "hicolor" / f"{size}x{size}" / "apps"
                                  / "ckpt-studio.png", "PNG")
    written["ico"] = save(render(ICO_SIZE), out_dir / "ckpt-studio.ico", "ICO")
    written["icns"] = save(render(ICNS_SIZE), out_dir / "ckpt-studio.icns", "ICNS")
    return written


if __name__ == "__main__":
    for name, path in render_all(Path(sys.argv[1] if len(sys.argv) > 1 else "build/icons")).items():
        print(f"{name}: {path}")
