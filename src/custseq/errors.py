"""Errors custseq raises for problems a user can fix.

Every user-facing failure is a :class:`CustseqError`; the CLI prints its message as one red line
and exits with code 2. Messages say what is wrong, where (file, table, column, value) and how to fix it.
"""

from __future__ import annotations


class CustseqError(Exception):
    """Base class of every error a user can act on."""


class DataReadError(CustseqError, OSError):
    """A data source cannot be found or read."""


class SchemaError(CustseqError, ValueError):
    """A table lacks a required column, or a column cannot be used as its role requires."""


class MappingError(SchemaError):
    """A column mapping names a column that the table does not have, or is malformed."""


class EmptyTableError(SchemaError):
    """A table has no rows, or no rows survive validation."""


class ConfigError(CustseqError, ValueError):
    """A setting (CLI option, config file or argument) has an invalid value."""


class WindowError(CustseqError, ValueError):
    """The requested as-of date, horizon or training windows cannot be built from the data."""


class QuarantineError(CustseqError, RuntimeError):
    """Row accounting failed: rows in != rows used + rows quarantined (a bug, never expected)."""


class TrainingError(CustseqError, RuntimeError):
    """Training could not run to the end (e.g. a distributed worker failed)."""


class ArtifactError(CustseqError, RuntimeError):
    """A saved artifact (model, vocabulary) is missing, corrupted or of another format version."""


class EngineError(CustseqError, RuntimeError):
    """The engine running the work stopped under it (e.g. Spark's driver ran out of memory)."""
