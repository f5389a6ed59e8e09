"""The ``custseq`` command line: each command parses options, builds its config, calls one pipeline, prints.

Commands live in modules by theme (:mod:`~custseq.cli.columns`, :mod:`~custseq.cli.data`, :mod:`~custseq.cli.model`,
:mod:`~custseq.cli.evaluation`, :mod:`~custseq.cli.decisions`, :mod:`~custseq.cli.serve`); importing them registers
them on :data:`app`.
"""

from __future__ import annotations

from custseq.cli import columns, data, decisions, evaluation, export, head, model, serve  # noqa: F401  (registers the commands)
from custseq.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="custseq")
