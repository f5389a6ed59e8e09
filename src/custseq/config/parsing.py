"""Reading settings written as text: horizons (``90d``, ``13w``, ``6m``, ``1y``) and ISO dates."""

from __future__ import annotations

import datetime as dt
import math
import re

from custseq.errors import ConfigError

HORIZON_UNITS_DAYS = {"d": 1.0, "w": 7.0, "m": 365.25 / 12, "y": 365.0}


def parse_horizon(text: str | int) -> int:
    """Parse a horizon (``90d``, ``13w``, ``6m``, ``1y`` or a number of days) into whole days.

    Months are 365.25/12 days and years 365 days, rounded to the nearest day (``6m`` = 183 days).

    Raises
    ------
    ConfigError
        If the text is not a positive number with an optional unit d/w/m/y.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        days = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dwmy]?)\s*", str(text).lower())
        if not m:
            raise ConfigError(
                f"horizon {text!r} is not understood; write a number of days or a number with a unit, "
                "e.g. 90d, 13w, 6m or 1y"
            )
        exact = float(m.group(1)) * HORIZON_UNITS_DAYS[m.group(2) or "d"]
        if not math.isfinite(exact):  # hundreds of digits read as inf, which round() refuses
            raise ConfigError(f"horizon {str(text)[:20]!r}… is too long; a horizon is at most 36525 days (100 years)")
        days = round(exact)
    if days < 1:
        raise ConfigError(f"horizon must be at least one day, got {text!r}")
    return int(days)


def parse_date(text: str | dt.date | dt.datetime, what: str = "date") -> dt.date:
    """Parse an ISO date (``1997-09-30``); a datetime is reduced to its date."""
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    try:
        text = str(text).strip()
        return dt.date.fromisoformat(text) if len(text) <= 10 else dt.datetime.fromisoformat(text).date()
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a date; write it as YYYY-MM-DD, e.g. 1997-09-30") from None
