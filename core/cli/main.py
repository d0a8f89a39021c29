"""`ckpt-studio`: the parser, the error guard and the door to the GUI (no subcommand, or only file
names, opens the desktop app). Each subcommand lives in its own module of this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from core import __version__
from core.errors import CheckpointError

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ckpt-studio",
        description="Inspect, convert, diff, export and check PyTorch checkpoints without running "
        "code from them. Run with no arguments (or only file names) to open the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show technical details")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation on a tiny bundled model: open, convert, "
                        "export (ONNX, TorchScript, .pt2, int8) and a parity check; exit 0 when "
                        "all of it works")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from core.cli import check, convert, diff, doctor, export, identify, inspect, scan

    for module in (inspect, scan, convert, diff, export, check, identify, doctor):
        module.add_parser(sub)
    _add_verbose_everywhere(sub)
    return parser


def _add_verbose_everywhere(sub: argparse._SubParsersAction) -> None:
    """`-v` also after the command (`inspect X -v`); SUPPRESS keeps a `-v` given before it."""
    for command in set(sub.choices.values()):
        if "--verbose" not in command._option_string_actions:
            command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                 help="show technical details")
        for action in command._subparsers._group_actions if command._subparsers else ():
            if isinstance(action, argparse._SubParsersAction):
                _add_verbose_everywhere(action)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = list(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    if not argv or (argv[0] not in commands and not argv[0].startswith("-")):
        typo = _command_typo(argv[0], commands) if argv else None
        if typo:
            _print_error(typo, None)
            return EXIT_ERROR
        return _open_gui(argv)
    args = parser.parse_args(argv)
    if args.self_test:
        from core.selftest import run as run_self_test

        return run_self_test()
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    return _guarded(args.run, args)


def _command_typo(word: str, commands: list[str]) -> str | None:
    """A first word that is no file and close to a command is a typo, not a file for the app."""
    import difflib
    from pathlib import Path

    if Path(word).exists() or any(c in word for c in "./\\"):  # looks like a file name
        return None
    close = difflib.get_close_matches(word, commands, n=1, cutoff=0.6)
    if not close:
        return None
    return f"unknown command '{word}' — did you mean '{close[0]}'? (see `ckpt-studio --help`)"


def _guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; turn every error into one plain sentence (details with --verbose).
    Library warnings (torch's deprecations, with source paths) are shown only with --verbose."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            return _run_plainly(run, args)
        finally:
            if getattr(args, "verbose", False):
                for w in caught:
                    print(f"warning: {w.message} ({w.category.__name__}, {w.filename}:{w.lineno})",
                          file=sys.stderr)


def _run_plainly(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return run(args)
    except CheckpointError as exc:
        _print_error(exc.message, exc.details if args.verbose else None)
        return EXIT_ERROR
    except KeyboardInterrupt:
        _print_error("Stopped.", None)
        return EXIT_ERROR
    except Exception as exc:  # a bug of ours: still no traceback unless asked
        import traceback

        details = traceback.format_exc() if args.verbose else None
        _print_error(f"Something went wrong inside Checkpoint Studio ({type(exc).__name__}: {exc}). "
                     "Run again with --verbose for details.", details)
        return EXIT_INTERNAL


def _print_error(message: str, details: str | None) -> None:
    print(f"Error: {message}", file=sys.stderr)
    if details:
        print(details, file=sys.stderr)


def _open_gui(files: list[str]) -> int:
    try:
        from gui.app import main as gui_main  # noqa: PLC0415 - the GUI loads only when asked
    except ImportError as exc:
        print("The desktop app is not available in this installation "
              f"({exc}). Use the commands instead, e.g. `ckpt-studio inspect FILE`; "
              "see `ckpt-studio --help`.", file=sys.stderr)
        return EXIT_ERROR
    return gui_main(files)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
