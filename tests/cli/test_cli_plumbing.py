"""What every command shares: --verbose anywhere, command typos, piped output, warnings."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli.main import EXIT_ERROR, EXIT_OK, build_parser, main
from core.errors import CheckpointError

CLI_MAIN = sys.modules["core.cli.main"]  # `core.cli.main` as an attribute is the function


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
                  ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    sub = parser._subparsers
    if sub is None:
        return [(path, parser)]
    out = []
    for action in sub._group_actions:
        for name, child in action.choices.items():
            out += _leaf_parsers(child, (*path, name))
    return out


def test_every_command_takes_verbose_after_its_name() -> None:
    leaves = _leaf_parsers(build_parser())
    assert {p for p, _ in leaves} >= {("inspect",), ("scan",), ("convert",), ("diff",), ("export",),
                                      ("check", "parity"), ("check", "latency")}
    for path, parser in leaves:
        assert "--verbose" in parser._option_string_actions, path
        assert "-v" in parser._option_string_actions, path


@pytest.mark.parametrize("argv", [["-v", "inspect", "x.pt"], ["inspect", "x.pt", "--verbose"],
                                  ["inspect", "-v", "x.pt"], ["diff", "a.pt", "b.pt", "-v"]])
def test_verbose_before_or_after_the_command_shows_details(argv: list[str], capsys,
                                                           monkeypatch) -> None:
    def fails(args: argparse.Namespace) -> int:
        raise CheckpointError("A plain sentence.", details="the technical part")

    monkeypatch.setattr("core.cli.inspect.run_inspect", fails)
    monkeypatch.setattr("core.cli.diff.run_diff", fails)
    code, _, err = run(argv, capsys)
    assert code == EXIT_ERROR
    assert err.splitlines() == ["Error: A plain sentence.", "the technical part"]
    code, _, err = run([a for a in argv if a not in ("-v", "--verbose")], capsys)
    assert err.splitlines() == ["Error: A plain sentence."]


def test_verbose_is_off_unless_asked() -> None:
    parser = build_parser()
    assert parser.parse_args(["scan", "x.pt"]).verbose is False
    assert parser.parse_args(["-v", "scan", "x.pt"]).verbose is True  # not reset by the subcommand
    assert parser.parse_args(["check", "latency", "m.onnx", "-v"]).verbose is True


def test_a_command_typo_names_the_command(capsys, monkeypatch) -> None:
    opened: list[list[str]] = []
    monkeypatch.setattr(CLI_MAIN, "_open_gui", lambda files: opened.append(files) or EXIT_OK)
    code, out, err = run(["inspct", "model.pt"], capsys)
    assert code == EXIT_ERROR and opened == [] and out == ""
    assert "unknown command 'inspct'" in err and "did you mean 'inspect'?" in err
    code, _, err = run(["convrt", "a.pt"], capsys)
    assert code == EXIT_ERROR and "did you mean 'convert'?" in err


def test_file_names_still_open_the_app(tmp_path: Path, capsys, monkeypatch) -> None:
    opened: list[list[str]] = []
    monkeypatch.setattr(CLI_MAIN, "_open_gui", lambda files: opened.append(files) or EXIT_OK)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inspct").write_bytes(b"")  # a file that happens to look like a typo
    assert main(["inspct"]) == EXIT_OK
    assert main(["diff.pt", "other.pt"]) == EXIT_OK  # a file name, even when missing
    assert main(["zzzz"]) == EXIT_OK  # close to no command: the app says the file is missing
    assert opened == [["inspct"], ["diff.pt", "other.pt"], ["zzzz"]]
    assert capsys.readouterr().err == ""


def test_piped_output_never_wraps_inside_a_token(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "m.pt"
    long_name = "encoder.layers.0.self_attention.query_key_value_projection.weight_with_a_long_tail"
    torch.save({long_name: torch.zeros(3, 2), "step": torch.zeros((), dtype=torch.int64),
                "mask": torch.zeros(4, dtype=torch.bool)}, path)
    env = {"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"}  # no COLUMNS: a plain pipe
    out = subprocess.run([sys.executable, "-m", "core.cli", "inspect", str(path)], capture_output=True,
                         text=True, env=env, cwd=Path(__file__).parents[2], check=True).stdout
    lines = out.splitlines()
    assert any(long_name in line for line in lines)
    total = next(line for line in lines if line.startswith("Total"))
    assert "int64 8 B" in total and "bool 4 B" in total  # one line, no break inside "8 B"


def test_torch_warnings_do_not_reach_the_terminal(tmp_path: Path) -> None:
    script = tmp_path / "warn.py"
    script.write_text(
        "import warnings, sys\n"
        "from core.cli import main as cli_main\n"
        "import core.cli.inspect as inspect_cmd\n"
        "def noisy(args):\n"
        "    warnings.warn('TypedStorage is deprecated', UserWarning)\n"
        "    return 0\n"
        "inspect_cmd.run_inspect = noisy\n"
        "sys.exit(cli_main(['inspect', 'x.pt', *sys.argv[1:]]))\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "TypedStorage" not in done.stderr and "UserWarning" not in done.stderr
    loud = subprocess.run([sys.executable, str(script), "-v"], capture_output=True, text=True, env=env)
    assert loud.stderr.startswith("warning: TypedStorage is deprecated (UserWarning, ")  # on request


def test_a_quantized_checkpoint_converts_without_torch_warnings(tmp_path: Path) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates creating quantized tensors
        weight = torch.quantize_per_tensor(torch.randn(4, 4), 0.1, 0, torch.qint8)
    torch.save({"w": weight}, tmp_path / "q.pt")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])}
    argv = [sys.executable, "-m", "core.cli", "convert", str(tmp_path / "q.pt"), "--to", "pt", "-o"]
    quiet = subprocess.run([*argv, str(tmp_path / "a.pt")], capture_output=True, text=True, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "Warning" not in quiet.stderr and "site-packages" not in quiet.stderr
