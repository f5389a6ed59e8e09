"""The time protocol (DESIGN §3): as-of date, cutoffs, horizons and the training windows.

``as_of`` is inclusive: as of 1997-09-30 everything up to the end of that day is known, so the cutoff
instant is 1997-10-01 00:00 and the prediction covers [cutoff, cutoff + horizon). Features and
sequences use rows with ``ts < cutoff`` only; this module and :mod:`custseq.labels` are the only
code that reads rows at or after a cutoff.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from custseq.config import WindowConfig
from custseq.errors import WindowError
from custseq.io.engine import fetch_row

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """A cutoff instant and a horizon: features before ``cutoff``, labels in [cutoff, end)."""

    cutoff: dt.datetime
    horizon_days: int

    @property
    def end(self) -> dt.datetime:
        return self.cutoff + self.horizon_days * DAY

    @property
    def as_of(self) -> dt.date:
        """The last day fully known at this cutoff."""
        return (self.cutoff - DAY).date()

    @property
    def key(self) -> str:
        """A stable name for files of this window (its as-of date)."""
        return self.as_of.isoformat()


@dataclass(frozen=True)
class WindowPlan:
    """The scoring window at as-of t0 and the training windows whose labels are fully observed."""

    scoring: Window
    training: tuple[Window, ...]  # latest first; training[0] is the validation window
    data_start: dt.datetime
    data_end: dt.datetime  # the last timestamp in the data

    @property
    def validation(self) -> Window:
        return self.training[0]

    @property
    def vocab_cutoff(self) -> dt.datetime:
        """Vocabularies and statistics are fitted on rows before the latest training cutoff (or the scoring one)."""
        return self.training[0].cutoff if self.training else self.scoring.cutoff

    @property
    def scoring_labels_observed(self) -> bool:
        """Whether the scoring window's labels are fully inside the data (a back-test)."""
        return self.scoring.end <= day_after(self.data_end)


def cutoff_of(as_of: dt.date) -> dt.datetime:
    """The cutoff instant of an inclusive as-of date (midnight after it)."""
    return dt.datetime.combine(as_of, dt.time()) + DAY


def day_after(ts: dt.datetime) -> dt.datetime:
    """Midnight after the day of ``ts``: the first instant the data cannot speak about."""
    return dt.datetime.combine(ts.date(), dt.time()) + DAY


def data_span(con: duckdb.DuckDBPyConnection, table: str = "clean_transactions") -> tuple[dt.datetime, dt.datetime]:
    """First and last timestamp of a clean table."""
    start, end = fetch_row(con, f"SELECT min(ts), max(ts) FROM {table}")
    return start, end


def plan_windows(data_start: dt.datetime, data_end: dt.datetime, cfg: WindowConfig) -> WindowPlan:
    """Lay out the scoring window and the training windows t0−H, t0−H−stride, …

    Raises
    ------
    WindowError
        If as-of is outside the data, if a training window's labels would be censored (run past the
        data's last day), or if the history is too short for even one training window.
    """
    last_day = data_end.date()
    as_of = cfg.as_of or last_day
    if as_of < data_start.date():
        raise WindowError(
            f"as-of {as_of} is before the first transaction ({data_start.date()}); choose a date in "
            f"{data_start.date()} … {last_day}"
        )
    if as_of > last_day:
        raise WindowError(
            f"as-of {as_of} is after the last day in the data ({last_day}): the training windows' labels would "
            f"be censored; use --as-of {last_day} or earlier"
        )
    horizon = cfg.horizon_days
    stride = cfg.stride_days or horizon
    scoring = Window(cutoff_of(as_of), horizon)
    earliest = dt.datetime.combine(data_start.date(), dt.time()) + cfg.min_history_days * DAY
    training: list[Window] = []
    cutoff = scoring.cutoff - horizon * DAY
    while cutoff > earliest and (cfg.max_train_windows is None or len(training) < cfg.max_train_windows):
        window = Window(cutoff, horizon)
        if window.end > day_after(data_end):  # cannot happen with as_of <= last day; guards the invariant
            raise WindowError(f"training window at {window.as_of} would have censored labels")
        training.append(window)
        cutoff -= stride * DAY
    if not training and cfg.require_training:
        raise WindowError(
            f"horizon {horizon} days is too long for the history before as-of {as_of}: the data start on "
            f"{data_start.date()} and a training window needs {cfg.min_history_days} days of history plus a "
            f"{horizon}-day label period; choose a shorter --horizon or a later --as-of"
        )
    return WindowPlan(scoring, tuple(training), data_start, data_end)
