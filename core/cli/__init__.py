"""`ckpt-studio`, the command line: one module per subcommand (`inspect`, `scan`, `convert`, `diff`,
`export`, `check`), each with `add_parser(sub)` and its run function, wired together in `main`;
`progress` and `render` are the rich progress bar and tables they share. No other core module
imports this package.

`core.cli:main` is the installed entry point.
"""

from core.cli.main import main

__all__ = ["main"]
