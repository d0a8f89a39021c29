"""The app on a real X server (Xvfb), not the offscreen platform: `ckpt-studio FOLDER` starts, opens a
199-tensor BERT-like model folder, and what the X server shows is a real window (not blank). The
scenes for docs/screenshots/ come from the same kind of run (set CKPT_STUDIO_SHOTS to a folder, as
for the offscreen screenshots, to get copies there).

Needs Debian's xvfb (Xvfb), and for the screen captures imagemagick (import) and xdotool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from safetensors.torch import save_file

from tests.gui.bert_like import bert_state_dict, write_pair
from tests.gui.real_x_scenes import SCENES, SCREEN

pytestmark = pytest.mark.skipif(shutil.which("Xvfb") is None,
                                reason="Xvfb is not installed (Debian package xvfb)")
ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 16,
          "num_hidden_layers": 12, "vocab_size": 120, "torch_dtype": "float32"}


@pytest.fixture()
def x_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh Xvfb on a free display (-displayfd), and an environment that uses it (xcb, not
    offscreen), with a private HOME so no real settings are read or written."""
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0",
                               f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            display = pipe.readline().strip()
        assert display, "Xvfb did not report its display"
        env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
        env |= {"DISPLAY": f":{display}", "HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT),
                "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config")}
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def model_folder(root: Path) -> Path:
    folder = root / "tiny-bert"
    folder.mkdir()
    save_file(bert_state_dict(), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(CONFIG))
    return folder


def app_command() -> list[str]:
    script = Path(sys.executable).with_name("ckpt-studio")
    return [str(script)] if script.exists() else [sys.executable, "-m", "core.cli"]


def assert_not_blank(path: Path, min_size: tuple[int, int] = (1000, 700)) -> None:
    image = QImage(str(path))
    assert not image.isNull(), f"{path} is not an image"
    assert image.width() >= min_size[0] and image.height() >= min_size[1], image.size()
    step_x, step_y = image.width() // 60, image.height() // 60
    pixels = [image.pixel(x, y) for x in range(0, image.width(), step_x)
              for y in range(0, image.height(), step_y)]
    most = max(pixels.count(p) for p in set(pixels))
    assert len(set(pixels)) >= 12, f"{path}: only {len(set(pixels))} colours"
    assert most / len(pixels) < 0.9, f"{path}: {most / len(pixels):.0%} of it is one colour"


def test_app_draws_a_real_checkpoint_on_x(x_env: dict[str, str], tmp_path: Path) -> None:
    """The app's own screenshot hook: the window, drawn through the xcb platform."""
    shot = tmp_path / "hook.png"
    folder = model_folder(tmp_path)
    done = subprocess.run([*app_command(), str(folder)], env=x_env | {"CKPT_STUDIO_SCREENSHOT": str(shot)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert_not_blank(shot)


@pytest.mark.skipif(shutil.which("import") is None or shutil.which("xdotool") is None,
                    reason="imagemagick (import) or xdotool is not installed")
def test_x_server_shows_the_window(x_env: dict[str, str], tmp_path: Path) -> None:
    """What the X server itself shows (a capture of the root window) while the app runs."""
    folder = model_folder(tmp_path)
    app = subprocess.Popen([*app_command(), str(folder)], env=x_env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["xdotool", "search", "--name", "tiny-bert"], env=x_env,
                             capture_output=True).returncode != 0:
            assert app.poll() is None, app.stderr.read() if app.stderr else ""
            assert time.monotonic() < deadline, "no window titled after the model appeared"
            time.sleep(0.2)
        time.sleep(2)  # the folder opens on a worker; let the tensors show
        shot = tmp_path / "root.png"
        subprocess.run(["import", "-window", "root", str(shot)], env=x_env, check=True, timeout=60)
    finally:
        app.terminate()
        app.wait(timeout=30)
    assert_not_blank(shot)


@pytest.mark.skipif(shutil.which("import") is None, reason="imagemagick (import) is not installed")
def test_scenes_for_the_docs(x_env: dict[str, str], tmp_path: Path) -> None:
    """The inspect view, the diff tree and the change plot, captured from the X server."""
    folder = model_folder(tmp_path)
    a, b = write_pair(tmp_path)
    out = tmp_path / "scenes"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "tests.gui.real_x_scenes", str(out), str(folder),
                           str(a), str(b)], env=x_env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in SCENES:
        assert_not_blank(out / name, SCREEN)
    docs = os.environ.get("CKPT_STUDIO_SHOTS")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        for name in SCENES:
            shutil.copy(out / name, Path(docs) / name)
