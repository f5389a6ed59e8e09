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
MAX_AS_OF_GAP_YEARS = 10  # an as-of later than this after the last row is refused as a likely typo
MIN_HORIZON_DAYS = 7  # the shortest horizon worth training on when the requested one does not fit


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
    notes: tuple[str, ...] = ()  # one line each, for the user (e.g. an as-of after the last row)

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


def check_as_of(as_of: dt.date, data_start: dt.datetime, data_end: dt.datetime) -> tuple[str, ...]:
    """Refuse an as-of date the data cannot speak for; the notes the user should see about an accepted one.

    An as-of after the last row is the user's word (a shop can be quiet on its last days): it is accepted, and
    the note says how far after the last row it lies.

    Returns
    -------
    tuple of str
        One line when ``as_of`` is after the last day in the data, else empty.

    Raises
    ------
    WindowError
        If ``as_of`` is before the first transaction, or more than :data:`MAX_AS_OF_GAP_YEARS` years after the
        last one (almost surely a typo).
    """
    first_day, last_day = data_start.date(), data_end.date()
    if as_of < first_day:
        raise WindowError(
            f"as-of {as_of} is before the first transaction ({first_day}); choose a date in {first_day} … {last_day}"
        )
    latest = _years_after(last_day, MAX_AS_OF_GAP_YEARS)
    if as_of > latest:
        raise WindowError(
            f"as-of {as_of} is more than {MAX_AS_OF_GAP_YEARS} years after the last row ({last_day}), which is "
            f"taken for a typo: an as-of may be at most {MAX_AS_OF_GAP_YEARS} years after the last row "
            f"({latest} here); check --as-of"
        )
    gap = (as_of - last_day).days
    if gap <= 0:
        return ()
    days = "1 day" if gap == 1 else f"{gap} days"
    return (f"last row {last_day}, {days} before as-of: training labels end there",)


def plan_windows(data_start: dt.datetime, data_end: dt.datetime, cfg: WindowConfig) -> WindowPlan:
    """Lay out the scoring window and the training windows t0−H, t0−H−stride, …

    The scoring window starts at the cutoff of as-of t0. The latest training cutoff is the latest c with
    c + H ≤ min(t0's cutoff, the day after the last row): labels are never censored, even when t0 is after the
    last row. Earlier training cutoffs follow every ``stride_days`` while they leave ``min_history_days``.

    Raises
    ------
    WindowError
        If as-of is refused by :func:`check_as_of`, or if the history is too short for even one training
        window (the message names the longest horizon that fits, see :func:`longest_trainable_horizon`).
    """
    as_of = cfg.as_of or data_end.date()
    notes = check_as_of(as_of, data_start, data_end)
    horizon = cfg.horizon_days
    stride = cfg.stride_days or horizon
    scoring = Window(cutoff_of(as_of), horizon)
    earliest = _earliest_cutoff(data_start, cfg.min_history_days)
    training: list[Window] = []
    cutoff = _latest_label_end(scoring.cutoff, data_end) - horizon * DAY
    while cutoff > earliest and (cfg.max_train_windows is None or len(training) < cfg.max_train_windows):
        training.append(Window(cutoff, horizon))
        cutoff -= stride * DAY
    if training and cutoff > earliest:
        notes += (
            f"history allows more than {len(training)} training windows; the latest {len(training)} are used "
            "(window.max_train_windows)",
        )
    if not training and cfg.require_training:
        longest = longest_trainable_horizon(data_start, data_end, cfg)
        fits = (
            f"the longest horizon that fits is {longest} days"
            if longest
            else f"not even a {MIN_HORIZON_DAYS}-day one fits"
        )
        raise WindowError(
            f"horizon {horizon} days is too long for the history before as-of {as_of}: the data start on "
            f"{data_start.date()} and a training window needs {cfg.min_history_days} days of history plus a "
            f"{horizon}-day label period ({fits}); choose a shorter --horizon or a later --as-of"
        )
    return WindowPlan(scoring, tuple(training), data_start, data_end, notes)


def longest_trainable_horizon(
    data_start: dt.datetime, data_end: dt.datetime, cfg: WindowConfig, minimum_days: int = MIN_HORIZON_DAYS
) -> int | None:
    """The longest horizon, up to ``cfg.horizon_days``, with at least one fully observed training window.

    Agrees with :func:`plan_windows` (same as-of and ``min_history_days``; stride and window count do not
    matter for the first window): with the returned h the plan has a training window, with h + 1 it has none
    unless h is ``cfg.horizon_days``. A model trained at h can then be carried to the requested horizon.

    Parameters
    ----------
    data_start, data_end
        First and last timestamp of the data.
    cfg
        The requested window settings.
    minimum_days
        A shorter horizon than this is not worth training on; the requested horizon is returned when it fits,
        even if it is shorter.

    Returns
    -------
    int or None
        ``cfg.horizon_days`` if it fits, else the longest h ≥ ``minimum_days`` that does, else None.

    Raises
    ------
    WindowError
        If as-of is refused by :func:`check_as_of`.
    """
    as_of = cfg.as_of or data_end.date()
    check_as_of(as_of, data_start, data_end)
    # The first training cutoff, label end − h, must be later than the earliest cutoff: h < (label end − earliest).
    room = _latest_label_end(cutoff_of(as_of), data_end) - _earliest_cutoff(data_start, cfg.min_history_days)
    longest = room.days - 1
    if longest >= cfg.horizon_days:
        return cfg.horizon_days
    return longest if longest >= max(minimum_days, 1) else None


def _latest_label_end(scoring_cutoff: dt.datetime, data_end: dt.datetime) -> dt.datetime:
    """Training labels end by the scoring cutoff (known at scoring time) and by the data's end (observed)."""
    return min(scoring_cutoff, day_after(data_end))


def _earliest_cutoff(data_start: dt.datetime, min_history_days: int) -> dt.datetime:
    """Training cutoffs must be later than this: midnight of the first day plus the minimum history."""
    return dt.datetime.combine(data_start.date(), dt.time()) + min_history_days * DAY


def _years_after(day: dt.date, years: int) -> dt.date:
    """The same day ``years`` later (29 February becomes 28 February in a common year)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)
