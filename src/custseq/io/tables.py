"""The user's tables as one input: transactions, optional customers and events, and their column mapping."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from custseq.config import ColumnsConfig
from custseq.io.sources import Source

TABLE_NAMES = ("transactions", "customers", "events")


@dataclass(frozen=True)
class Tables:
    """What a run reads: where each table comes from, and how its columns map onto the data contract.

    Build it with :meth:`of` from whatever a user passes (paths, ``db.duckdb:table``, frames).
    """

    transactions: Source
    customers: Source | None = None
    events: Source | None = None
    columns: ColumnsConfig | None = None  # None: the run's config says (a saved model's own, for score)

    @classmethod
    def of(
        cls, transactions: Any, *, customers: Any = None, events: Any = None, columns: ColumnsConfig | None = None
    ) -> Tables:
        """Interpret each table as :meth:`custseq.io.sources.Source.of` does; None leaves a table out.

        Raises
        ------
        DataReadError
            If a file does not exist or its format is not recognised.
        """
        return cls(
            Source.of(transactions, "transactions"),
            Source.of(customers, "customers") if customers is not None else None,
            Source.of(events, "events") if events is not None else None,
            columns,
        )

    def present(self) -> Iterator[tuple[str, Source]]:
        """(name, source) of every table given, transactions first."""
        for name in TABLE_NAMES:
            source = getattr(self, name)
            if source is not None:
                yield name, source
