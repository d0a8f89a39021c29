"""The README's export example agrees with how `export` names its files: after the checkpoint
(`model.pt` -> `out/model.onnx`), or after `--name`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"
FLAGS = {"--trust", "--optimize", "--pooling", "--non-strict", "--overwrite", "--json", "-v",
         "--verbose"}
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2"}


def _export_example() -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.DOTALL)
    found = [b for b in blocks if re.search(r"^\s*\$ ckpt-studio export ", b, flags=re.MULTILINE)]
    assert found, "README.md has no console example that starts with '$ ckpt-studio export'"
    return [line.strip() for line in found[0].splitlines() if line.strip()]


def _parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    positional: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in FLAGS:
            options[arg] = ""
        elif arg.startswith("-"):
            options[arg] = next(args)
        else:
            positional.append(arg)
    return options, positional


def test_readme_export_files_are_named_as_export_names_them() -> None:
    lines = _export_example()
    argv = shlex.split(lines[0].removeprefix("$ "))[2:]
    options, positional = _parse(argv)
    stem = options.get("--name") or Path(positional[0]).name.split(".")[0]
    out_dir = options["--out-dir"]
    shown = {m.group(1): m.group(2) for line in lines[1:]
             if (m := re.match(r"^(onnx|torchscript|pt2): (\S+) \(", line))}
    targets = options.get("--to", "onnx,torchscript,pt2").split(",")
    assert set(shown) == set(targets)
    for target, path in shown.items():
        assert path == f"{out_dir}/{stem}{SUFFIXES[target]}", (target, path)
