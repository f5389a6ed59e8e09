"""Columns: how the user's tables fill the roles of the data contract, from their first rows."""

from __future__ import annotations

from custseq.config import RunConfig
from custseq.io.engine import connect
from custseq.io.tables import Tables
from custseq.validate.roles import ColumnsReport, explain_into


def explain_columns(tables: Tables, config: RunConfig) -> ColumnsReport:
    """Every role of every table given: the source column it maps to and how, the extra columns and their use,
    and the ``--column`` option of each missing required role. Reads the first rows of each table only."""
    con = connect(config.engine)
    try:
        return explain_into(con, tables, config)
    finally:
        con.close()
