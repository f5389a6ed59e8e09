"""Validate: check the user's tables against the data contract and write the rejected rows with reasons."""

from __future__ import annotations

from pathlib import Path

from custseq.config import RunConfig
from custseq.io.engine import connect
from custseq.io.tables import Tables
from custseq.validate.tables import ValidationReport, validate_into
from custseq.windows import cutoff_of


def validate(tables: Tables, config: RunConfig, *, quarantine_dir: Path | str | None = None) -> ValidationReport:
    """Validate the tables; with ``config.window.as_of``, rows after it are handled as
    ``config.validation.future_rows`` says (``quarantine``: they must not exist)."""
    con = connect(config.engine)
    try:
        future = cutoff_of(config.window.as_of) if config.window.as_of else None
        folder = Path(quarantine_dir) if quarantine_dir else None
        return validate_into(con, tables, config, quarantine_dir=folder, future_cutoff=future)
    finally:
        con.close()
