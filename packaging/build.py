"""Build Checkpoint Studio's installers: `python packaging/build.py` (any Python 3.11 will do).

0. creates (or reuses) the build environment <work>/installer-venv from
   packaging/installer-requirements.txt and build-requirements.txt and runs again inside it, so
   only the declared distributions can be frozen (`--current-env` freezes from the running one);
1. renders the icon sizes from resources/icons/ckpt-studio.svg (build/icons/);
2. runs PyInstaller on packaging/checkpoint-studio.spec -> dist/checkpoint-studio/ (one folder);
3. strips torch's libraries, writes the bill of materials (dist/bom.json; the build fails on an
   undeclared distribution), copies the bundled distributions' licence files, measures the size;
4. on Linux: dist/checkpoint-studio-<version>-linux-<arch>.tar.gz and
   dist/checkpoint-studio_<version>_<arch>.deb (with `dpkg-deb`), and an AppImage when
   `appimagetool` is on PATH (neither PyPI nor Debian ships it; see packaging/README.md).

`--no-slim` builds without packaging/slim.py's exclusions, to measure what they save.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bom  # noqa: E402
import buildenv  # noqa: E402
import icons  # noqa: E402
import slim  # noqa: E402

APP = "checkpoint-studio"
EXE = "ckpt-studio"
APPSTREAM_ID = "io.github.checkpoint_studio.CheckpointStudio"
MAINTAINER = "Checkpoint Studio developers <checkpoint-studio@example.invalid>"  # placeholder
HOMEPAGE = "https://example.invalid/checkpoint-studio"  # placeholder until the project has one
T = TypeVar("T")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-slim", dest="slim", action="store_false",
                        help="keep everything PyInstaller collects (to measure the exclusions)")
    parser.add_argument("--no-installers", dest="installers", action="store_false",
                        help="only the folder: no .deb, .tar.gz or AppImage")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--work", type=Path, default=ROOT / "build", help="PyInstaller's work folder")
    parser.add_argument("--deb-compression", default="gzip", choices=["gzip", "xz", "zstd", "none"])
    parser.add_argument("--venv", type=Path, default=None,
                        help="the build environment (default: <work>/installer-venv)")
    parser.add_argument("--current-env", action="store_true",
                        help="freeze from the running interpreter instead of the build environment "
                             "(undeclared distributions are still excluded, and fail the build if they "
                             "reach the bundle)")
    parser.add_argument("--analysis-only", action="store_true",
                        help="stop after PyInstaller's analysis: only <dist>/bom.json, sized from the "
                             "collected files before stripping")
    return parser.parse_args(argv)


def project_version() -> str:
    text = (ROOT / "core" / "__init__.py").read_text(encoding="utf-8")
    version = re.search(r'__version__ = "([^"]+)"', text).group(1)  # type: ignore[union-attr]
    spec = (HERE / "checkpoint-studio.spec").read_text(encoding="utf-8")
    if f'VERSION = "{version}"' not in spec:
        raise SystemExit(f"packaging/checkpoint-studio.spec's VERSION is not {version}; update it.")
    return version


def run_pyinstaller(args: argparse.Namespace, icon_dir: Path) -> Path:
    work = pyinstaller_work(args)
    env = dict(os.environ, CKPT_STUDIO_SLIM="1" if args.slim else "0",
               CKPT_STUDIO_ICONS=str(icon_dir), CKPT_STUDIO_MANIFEST=str(work / "manifest.json"),
               CKPT_STUDIO_ANALYSIS_ONLY="1" if args.analysis_only else "0")
    command = [sys.executable, "-m", "PyInstaller", str(HERE / "checkpoint-studio.spec"),
               "--noconfirm", "--log-level", "WARN", "--distpath", str(args.dist),
               "--workpath", str(work)]
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    return args.dist / APP


def pyinstaller_work(args: argparse.Namespace) -> Path:
    return args.work / ("pyinstaller" if args.slim else "pyinstaller-full")


def internal_dir(folder: Path) -> Path:
    return folder / "_internal"


def copy_licences(folder: Path, components: list[bom.Component]) -> int:
    """Licence files of every bundled distribution (and Python's) into _internal/licenses/."""
    dest_root = internal_dir(folder) / "licenses"
    bundled = {part.name for part in components}
    count = 0
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        if buildenv.normalize(name) not in bundled or (dest_root / name).exists():
            continue
        count += _copy_dist_licences(dist, dest_root / name)
    python_licence = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (python_licence / "LICENSE.txt", Path(sys.base_prefix) / "LICENSE.txt"):
        if candidate.is_file():
            (dest_root / "Python").mkdir(parents=True, exist_ok=True)
            shutil.copy2(candidate, dest_root / "Python" / "LICENSE.txt")
            return count + 1
    return count


def _copy_dist_licences(dist: importlib.metadata.Distribution, dest: Path) -> int:
    files = [f for f in dist.files or [] if re.search(r"LICEN[CS]E|COPYING|NOTICE", f.name.upper())]
    dest.mkdir(parents=True, exist_ok=True)
    if not files:  # say what the metadata says, at least
        licence = dist.metadata.get("License") or dist.metadata.get("License-Expression") or "?"
        (dest / "LICENSE-METADATA.txt").write_text(f"{dist.metadata['Name']}: {licence}\n")
        return 1
    for index, file in enumerate(files):
        source = Path(str(dist.locate_file(file)))
        if source.is_file():
            shutil.copy2(source, dest / (file.name if index == 0 else f"{index}-{file.name}"))
    return len(files)


def folder_size(folder: Path) -> int:
    """Bytes of every regular file under `folder` (symlinks not followed)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def size_report(folder: Path, top: int = 12) -> str:
    internal = internal_dir(folder)
    parts = [(folder_size(p) if p.is_dir() else p.lstat().st_size, p.name)
             for p in internal.iterdir() if not p.is_symlink()]
    lines = [f"{folder.name}: {mib(folder_size(folder))} in total; largest parts of _internal:"]
    lines += [f"  {mib(size):>10}  {name}" for size, name in sorted(parts, reverse=True)[:top]]
    return "\n".join(lines)


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def make_tarball(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(folder, arcname=out.name.removesuffix(".tar.gz"))
    return out


def deb_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()


def stage_deb(folder: Path, icon_dir: Path, root: Path, version: str, arch: str) -> Path:
    """The .deb's file tree: /opt/checkpoint-studio, /usr/bin link, /usr/share integration."""
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(folder, root / "opt" / APP, symlinks=True, copy_function=_link_or_copy)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / EXE).symlink_to(f"../../opt/{APP}/{EXE}")
    share = root / "usr" / "share"
    _install(ROOT / "resources" / "ckpt-studio.desktop", share / "applications" / "ckpt-studio.desktop")
    _install(ROOT / "resources" / "ckpt-studio-mime.xml", share / "mime" / "packages" / "ckpt-studio.xml")
    _install(ROOT / "resources" / f"{APPSTREAM_ID}.metainfo.xml",
             share / "metainfo" / f"{APPSTREAM_ID}.metainfo.xml")
    _install(ROOT / "resources" / "icons" / "ckpt-studio.svg",
             share / "icons" / "hicolor" / "scalable" / "apps" / "ckpt-studio.svg")
    for png in sorted((icon_dir / "hicolor").glob("*/apps/ckpt-studio.png")):
        _install(png, share / "icons" / "hicolor" / png.relative_to(icon_dir / "hicolor"))
    _install(HERE / "debian" / "copyright", share / "doc" / APP / "copyright")
    _write_control(root, version, arch)
    return root


def _link_or_copy(source: str, dest: str) -> None:
    try:
        os.link(source, dest)  # same file system: no second copy of ~500 MB
    except OSError:
        shutil.copy2(source, dest)


def _install(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    dest.chmod(0o644)


def _write_control(root: Path, version: str, arch: str) -> None:
    template = (HERE / "debian" / "control.in").read_text(encoding="utf-8")
    control = template.format(version=version, arch=arch, maintainer=MAINTAINER,
                              installed_size=folder_size(root) // 1024 + 1,
                              depends=", ".join(slim.deb_depends(internal_dir(root / "opt" / APP))),
                              homepage=HOMEPAGE)
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(control, encoding="utf-8")


def make_deb(root: Path, out: Path, compression: str) -> Path:
    level = ["-z6"] if compression in ("gzip", "xz") else []
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", *level, "--build", str(root),
                    str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def make_appimage(folder: Path, icon_dir: Path, appdir: Path, out: Path) -> Path | None:
    """An AppImage when `appimagetool` is on PATH (untested here: no registry has it)."""
    tool = shutil.which("appimagetool")
    if tool is None:
        return None
    if appdir.exists():
        shutil.rmtree(appdir)
    shutil.copytree(folder, appdir / "opt" / APP, symlinks=True, copy_function=_link_or_copy)
    (appdir / "AppRun").symlink_to(f"opt/{APP}/{EXE}")
    shutil.copyfile(ROOT / "resources" / "ckpt-studio.desktop", appdir / "ckpt-studio.desktop")
    shutil.copyfile(icon_dir / "hicolor" / "256x256" / "apps" / "ckpt-studio.png",
                    appdir / "ckpt-studio.png")
    subprocess.run([tool, str(appdir), str(out)], check=True, env=dict(os.environ, ARCH="x86_64"))
    return out


def linux_installers(folder: Path, icon_dir: Path, args: argparse.Namespace, version: str) -> None:
    arch = deb_arch() if shutil.which("dpkg") else "amd64"
    tar_name = f"{APP}-{version}-linux-{os.uname().machine}.tar.gz"
    timed("tar.gz", lambda: make_tarball(folder, args.dist / tar_name))
    if shutil.which("dpkg-deb") is None:
        print("skipped the .deb: dpkg-deb is not installed (apt-get install dpkg)")
    else:
        root = stage_deb(folder, icon_dir, args.work / "deb-root", version, arch)
        timed(".deb", lambda: make_deb(root, args.dist / f"{APP}_{version}_{arch}.deb",
                                        args.deb_compression))
    image = make_appimage(folder, icon_dir, args.work / "AppDir",
                          args.dist / f"{APP}-{version}-{os.uname().machine}.AppImage")
    if image is None:
        print("skipped the AppImage: appimagetool is not on PATH (not in PyPI or Debian; "
              "see packaging/README.md)")


def timed(what: str, make: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = make()
    size = f", {mib(result.stat().st_size)}" if isinstance(result, Path) and result.is_file() else ""
    print(f"{what}: {result} ({time.perf_counter() - start:.0f} s{size})", flush=True)
    return result


def in_build_env(args: argparse.Namespace, argv: list[str]) -> int:
    """Run this script again with the build environment's interpreter (created when needed)."""
    venv = (args.venv or args.work / "installer-venv").resolve()
    start = time.perf_counter()
    python = buildenv.ensure_venv(venv)
    print(f"build environment: {venv} ({time.perf_counter() - start:.0f} s)", flush=True)
    command = [str(python), str(Path(__file__).resolve()), *argv, "--current-env",
               "--dist", str(args.dist), "--work", str(args.work)]
    return subprocess.run(command, env=buildenv.clean_env(), cwd=ROOT).returncode


def bill_of_materials(args: argparse.Namespace, folder: Path | None) -> list[bom.Component]:
    """Writes <dist>/bom.json, prints it; exits when the bundle holds an undeclared distribution."""
    work = pyinstaller_work(args)
    internal = internal_dir(folder) if folder is not None else None
    # PyInstaller's archive of the bundle's bytecode (an analysis has no fresh one)
    pyz = work / APP / "PYZ-00.pyz" if folder is not None else None
    components = bom.bill_of_materials(work / "manifest.json", internal, pyz, ROOT)
    print(bom.summary(components), flush=True)
    args.dist.mkdir(parents=True, exist_ok=True)
    bom.write_json(components, args.dist / "bom.json", folder_size(folder) if folder else None)
    strays = bom.undeclared(components)
    if strays:
        raise SystemExit(f"the bundle holds distributions that packaging/installer-requirements.txt "
                         f"does not declare: {', '.join(strays)}")
    return components


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    args.dist, args.work = args.dist.resolve(), args.work.resolve()
    version = project_version()
    if not args.current_env:
        return in_build_env(args, argv)
    start = time.perf_counter()
    icon_dir = args.work / "icons"
    icons.render_all(icon_dir)
    folder = timed("PyInstaller", lambda: run_pyinstaller(args, icon_dir))
    if args.analysis_only:
        bill_of_materials(args, None)
        print(f"analysis finished in {time.perf_counter() - start:.0f} s", flush=True)
        return 0
    if args.slim and sys.platform.startswith("linux"):
        print(f"stripped symbols: {mib(slim.strip_libraries(internal_dir(folder)))} saved")
        orphans = slim.prune_orphans(internal_dir(folder))
        print(f"libraries nothing needs any more, removed: {len(orphans)} ({', '.join(orphans)})")
        _, unprovided = slim.os_needs(internal_dir(folder))
        if unprovided:
            print(f"WARNING: needed but neither bundled nor in slim.OS_LIBRARIES: {sorted(unprovided)}")
    components = bill_of_materials(args, folder)
    print(f"licence files copied: {copy_licences(folder, components)}")
    print(size_report(folder), flush=True)
    bom.write_json(components, args.dist / "bom.json", folder_size(folder))
    if args.installers and sys.platform.startswith("linux"):
        linux_installers(folder, icon_dir, args, version)
    print(f"build finished in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
