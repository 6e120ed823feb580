"""What every command-line script shares: its parser (the module docstring as help), the run-directory
options, and running the work so that user mistakes are one line and exit code 2 (core.errors.run_cli)."""
from __future__ import annotations

import argparse

from core.errors import run_cli


class _OneLineParser(argparse.ArgumentParser):
    """A command-line mistake is one line, as every other user mistake (argparse prints its usage block too)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def parser(doc: str) -> argparse.ArgumentParser:
    return _OneLineParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)


def add_run_dir(p: argparse.ArgumentParser, required: bool = True, checkpoint: bool = True,
                help: str = "a finished run directory") -> None:
    p.add_argument("--run-dir", required=required, help=help)
    if checkpoint:
        p.add_argument("--checkpoint", choices=["best", "train"], default="best",
                       help="best: the best epoch by train.monitor (default); train: the latest training state")


def main(p: argparse.ArgumentParser, work, argv=None) -> int:
    """Parses argv and runs work(args) under run_cli."""
    args = p.parse_args(argv)
    return run_cli(lambda: work(args))
