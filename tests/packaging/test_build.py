"""The frozen build: `python packaging/build.py`, then the bundle, the .deb and the .tar.gz checked.

Slow (a PyInstaller build of torch takes about 5 minutes), so it runs only when asked; `.ci/run`
asks (it exports CKPT_STUDIO_BUILD=1 before the README's test command):

    CKPT_STUDIO_BUILD=1 QT_QPA_PLATFORM=offscreen python -m pytest -q tests/packaging/test_build.py
    CKPT_STUDIO_BUILD=reuse ...   # check the dist/ already built, without building again

Every frozen run happens with a clean environment (`env -i`: no venv, no PYTHONPATH), so the
bundle proves it carries everything itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from packaging.version import Version

from core import __version__

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "packaging"))
import bom  # noqa: E402
import buildenv  # noqa: E402
import slim  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
FOLDER = DIST / "checkpoint-studio"
EXE = FOLDER / "ckpt-studio"
# The aim was <= 600 MB; torch's CPU library alone is 330 MiB stripped, and the folder built from
# the declared environment (with gguf and xxhash) measured 608.8 MiB after every exclusion
# (packaging/README.md, "Size"). This guards against regressions from there.
SIZE_LIMIT = 615 * 2**20
GUI_SECONDS = 20
BUILD = os.environ.get("CKPT_STUDIO_BUILD", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux build only"),
    pytest.mark.skipif(BUILD not in ("1", "reuse"),
                       reason="builds for many minutes: set CKPT_STUDIO_BUILD=1 (or =reuse)"),
]


@pytest.fixture(scope="module")
def built() -> Path:
    if BUILD == "1":
        pytest.importorskip("PyInstaller", reason="pip install -e '.[package]'")
        subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py")], cwd=ROOT, check=True,
                       timeout=3300)
    if not EXE.is_file():
        pytest.fail(f"{EXE} was not built")
    return FOLDER


def clean_env(home: Path, **extra: str) -> list[str]:
    """`env -i` with only what a desktop session would have: no venv, no PYTHONPATH."""
    pairs = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **extra}
    return ["env", "-i", *(f"{k}={v}" for k, v in pairs.items())]


def test_frozen_self_test_passes_in_a_clean_environment(built: Path, tmp_path: Path) -> None:
    result = subprocess.run([*clean_env(tmp_path), str(EXE), "--self-test"], capture_output=True,
                            text=True, timeout=600, cwd=tmp_path)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(frozen)" in result.stdout and "self-test passed" in result.stdout


def test_frozen_capability_report_matches_what_the_app_does(built: Path, tmp_path: Path) -> None:
    """No AOTInductor export or torch.compile (no compiler inside), no ExecuTorch (not bundled), and
    the AOTInductor runner offered exactly when the app really runs a package (compiled here)."""
    result = subprocess.run([*clean_env(tmp_path), str(EXE), "doctor", "--json"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    entries = {(e["name"], kind): e for kind in ("targets", "runners") for e in report[kind]}
    assert report["compiler"]["available"] is False
    assert entries["aoti", "targets"]["reason"].startswith("AOTInductor needs a C++ compiler, but "
                                                           "the installed app carries no C++")
    assert entries["compiled", "runners"]["available"] is False
    assert entries["executorch", "targets"]["reason"].startswith(
        "The installed app does not include ExecuTorch")
    if not shutil.which("g++"):
        return  # nothing here to compile a package with for the runner check below
    from core.export import ExportOptions, export
    from core.inputs import parse_specs
    from tests.fixtures import export_models

    spec = export_models.SPECS["mlp"]
    export(export_models.mlp(), parse_specs(spec), ["pt2", "aoti"], tmp_path,
           ExportOptions(name="mlp"))
    run = subprocess.run([*clean_env(tmp_path), str(EXE), "check", "parity", "mlp.pt2",
                          "mlp.aoti.pt2", "--trust", "--input", spec, "--shapes", "batch=1",
                          "batch=64"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    runner = entries["aoti", "runners"]
    assert (run.returncode == 0) is runner["available"], run.stdout + run.stderr
    if not runner["available"]:
        assert runner["reason"][:-1].lower() in run.stderr.lower() and "Traceback" not in run.stderr


def test_bundle_has_qt_platform_plugins_and_size_is_reported(built: Path) -> None:
    platforms = built / "_internal" / "PySide6" / "Qt" / "plugins" / "platforms"
    for plugin in ("libqoffscreen.so", "libqxcb.so"):
        assert (platforms / plugin).is_file(), plugin
    size = sum(p.lstat().st_size for p in built.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"bundle size: {size / 2**20:.1f} MiB = {size / 1e6:.0f} MB "
          f"(limit {SIZE_LIMIT / 2**20:.0f} MiB)")
    assert size <= SIZE_LIMIT


def test_tarball_holds_the_folder(built: Path) -> None:
    (tarball,) = DIST.glob(f"checkpoint-studio-{__version__}-linux-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    top = tarball.name.removesuffix(".tar.gz")
    assert f"{top}/ckpt-studio" in names
    assert f"{top}/_internal/resources/selftest/tiny.safetensors" in names


@pytest.fixture(scope="module")
def deb_root(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg is not installed")
    (deb,) = DIST.glob(f"checkpoint-studio_{__version__}_*.deb")
    root = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def test_deb_installs_the_app_its_link_and_desktop_integration(deb_root: Path) -> None:
    link = deb_root / "usr" / "bin" / "ckpt-studio"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (deb_root / "opt" / "checkpoint-studio" / "ckpt-studio").resolve()
    share = deb_root / "usr" / "share"
    expected = ["applications/ckpt-studio.desktop", "mime/packages/ckpt-studio.xml",
                "metainfo/io.github.checkpoint_studio.CheckpointStudio.metainfo.xml",
                "icons/hicolor/scalable/apps/ckpt-studio.svg", "doc/checkpoint-studio/copyright"]
    expected += [f"icons/hicolor/{n}x{n}/apps/ckpt-studio.png" for n in (16, 32, 48, 128, 256, 512)]
    missing = [name for name in expected if not (share / name).is_file()]
    assert not missing
    mime = (share / "mime" / "packages" / "ckpt-studio.xml").read_text()
    for glob in ("*.safetensors", "*.pt", "*.pth", "*.ckpt", "*.onnx"):
        assert f'pattern="{glob}"' in mime


def test_deb_link_runs_the_app(deb_root: Path, tmp_path: Path) -> None:
    result = subprocess.run([*clean_env(tmp_path), str(deb_root / "usr" / "bin" / "ckpt-studio"),
                             "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


def test_desktop_file_and_metainfo_validate(deb_root: Path) -> None:
    share = deb_root / "usr" / "share"
    validators = {"desktop-file-validate": [str(share / "applications" / "ckpt-studio.desktop")],
                  "appstreamcli": ["validate", "--no-net", *map(str, (share / "metainfo").iterdir())]}
    ran = []
    for tool, args in validators.items():
        if shutil.which(tool):
            result = subprocess.run([tool, *args], capture_output=True, text=True)
            assert result.returncode == 0, result.stdout + result.stderr
            ran.append(tool)
    if not ran:
        pytest.skip("neither desktop-file-validate nor appstreamcli is installed "
                    "(apt-get install -y desktop-file-utils appstream)")


def test_deb_depends_on_every_library_left_to_the_os(deb_root: Path) -> None:
    (deb,) = DIST.glob(f"checkpoint-studio_{__version__}_*.deb")
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Depends"],
                            capture_output=True, text=True, check=True).stdout
    assert "Package: checkpoint-studio" in fields and f"Version: {__version__}" in fields
    internal = deb_root / "opt" / "checkpoint-studio" / "_internal"
    covered, unprovided = slim.os_needs(internal)
    assert not unprovided, f"needed, but neither bundled nor a known OS library: {unprovided}"
    depends = fields.split("Depends:", 1)[1]
    for name in covered:
        assert slim.OS_LIBRARIES[name] in depends, name
    # Qt 6.5+'s xcb platform plugin links libxcb-cursor, which desktops lacked before Qt needed it
    assert "libxcb-cursor0" in depends and "libc6 (>= " in depends


def test_desktop_libraries_are_left_to_the_os(built: Path) -> None:
    """A bundled glib/fontconfig/X11/libstdc++ clashes with the system's drivers and config files."""
    bundled = {p.name for p in (built / "_internal").iterdir()}
    assert not bundled & slim.OS_LIBRARIES.keys()


def test_frozen_gui_starts_offscreen(built: Path, tmp_path: Path) -> None:
    """The window comes up and the app keeps running (a missing Qt plugin or import exits early)."""
    env = clean_env(tmp_path, QT_QPA_PLATFORM="offscreen")
    with subprocess.Popen([*env, str(EXE)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, cwd=tmp_path) as process:
        deadline = time.monotonic() + GUI_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        alive = process.poll() is None
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert alive, f"the GUI exited with {process.returncode}:\n{output}"
    assert "Traceback" not in output


def test_frozen_gui_shows_its_window_with_a_file_open(built: Path, tmp_path: Path) -> None:
    """The frozen window draws a checkpoint's tensors; the screenshot is kept in dist/."""
    shot = tmp_path / "frozen-gui.png"
    env = clean_env(tmp_path, QT_QPA_PLATFORM="offscreen", CKPT_STUDIO_SCREENSHOT=str(shot))
    tiny = built / "_internal" / "resources" / "selftest" / "tiny.safetensors"
    result = subprocess.run([*env, str(EXE), str(tiny)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    saved = DIST / "frozen-gui.png"
    shutil.copyfile(shot, saved)
    print(f"screenshot: {saved}")
    width, height, colours = png_summary(shot)
    assert width >= 640 and height >= 400
    assert colours > 20  # a drawn window, not a blank or single-colour surface


def png_summary(path: Path) -> tuple[int, int, int]:
    """Width, height and how many distinct colours (counted on a sample of pixels)."""
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    assert not image.isNull(), f"{path} is not an image"
    colours = {image.pixel(x, y) for x in range(0, image.width(), 3) for y in range(0, image.height(), 3)}
    return image.width(), image.height(), len(colours)


def bom_names(path: Path) -> dict[str, str]:
    return {c["name"]: c["version"] for c in json.loads(path.read_text())["components"]}


def test_bill_of_materials_lists_the_declared_distributions_with_sizes_and_licences(built: Path) -> None:
    data = json.loads((DIST / "bom.json").read_text())
    parts = {c["name"]: c for c in data["components"]}
    pins = buildenv.read_lock() | buildenv.read_lock(buildenv.BUILD_LOCK)  # + PyInstaller's run-time part
    assert {"torch", "numpy", "pyside6-essentials", "onnxruntime", buildenv.PROJECT} <= parts.keys()
    assert parts.keys() - {buildenv.PROJECT, bom.PYTHON, bom.OS_FILES} <= buildenv.declared()
    for name, part in parts.items():
        if name in pins:  # frozen from the build environment: exactly the pinned version
            assert Version(part["version"]).public == Version(pins[name]).public, name
        else:
            assert name in (buildenv.PROJECT, bom.PYTHON, bom.OS_FILES), f"undeclared: {name}"
        assert part["licence"] and part["size"] > 0 and part["files"] > 0, name
    assert "transformers" not in parts
    accounted = sum(part["size"] for part in parts.values())
    print(f"bill of materials: {len(parts)} components, {accounted / 2**20:.1f} MiB of "
          f"{data['folder_size'] / 2**20:.1f} MiB")
    # the rest: the executable, base_library.zip, licence files, links PyInstaller adds
    assert 0.9 * data["folder_size"] <= accounted <= data["folder_size"]


def fake_distribution(site: Path, name: str, source: str) -> None:
    """An installed distribution `name` (one module) in `site`, as pip would leave it."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{name}.py").write_text(source)
    info = site / f"{name}-9.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 9.9\n")
    (info / "RECORD").write_text(f"{name}.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def test_an_extra_package_in_the_outer_environment_does_not_reach_the_bundle(built: Path,
                                                                              tmp_path: Path) -> None:
    """The second build, from the outer environment, stops after PyInstaller's analysis.

    It freezes from this interpreter (`--current-env`), not from the build environment, with an
    extra package installed that the app's dependencies import when they find it (requests imports
    simplejson), beside the undeclared packages this environment has anyway (pytest, and
    transformers, which core.hf imports). The analysis decides everything the bundle holds; the
    later steps only strip and prune files. Same distributions as the built bundle = nothing the
    outer environment adds reaches an installer, even built from there."""
    site = tmp_path / "site-packages"
    fake_distribution(site, "simplejson", "from json import *  # noqa\nJSONDecodeError = ValueError\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    probe = subprocess.run([sys.executable, "-c", "import requests.compat as c; print(c.has_simplejson)"],
                           env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == "True", probe.stderr  # the extra package is really reachable
    out = tmp_path / "dist"
    subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py"), "--current-env",
                    "--analysis-only", "--dist", str(out), "--work", str(tmp_path / "work")],
                   cwd=ROOT, env=env, check=True, timeout=1800)
    outer, clean = bom_names(out / "bom.json"), bom_names(DIST / "bom.json")
    assert "simplejson" not in outer and "transformers" not in outer
    assert sorted(outer) == sorted(clean)
