"""The bundled CDNOW master data set (Fader & Hardie): 23,570 customers, 69,659 purchases, 1997–1998.

See ``data/CDNOW.md`` next to this file for the source and citation.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

CDNOW_CITATION = (
    "Fader, P. S., Hardie, B. G. S., & Lee, K. L. (2005). 'Counting Your Customers' the Easy Way: "
    "An Alternative to the Pareto/NBD Model. Marketing Science, 24(2), 275-284."
)
CDNOW_AS_OF = "1998-06-30"  # the last day of the data


def cdnow_path() -> Path:
    """Path of the bundled ``cdnow_master.csv.gz`` (customer_id, date, number_of_cds, dollar_value)."""
    return Path(str(resources.files("custseq.datasets") / "data" / "cdnow_master.csv.gz"))


def load_cdnow() -> pd.DataFrame:
    """The CDNOW master transactions as a DataFrame; ``customer_id`` keeps its leading zeros.

    Returns
    -------
    pandas.DataFrame
        Columns ``customer_id`` (str), ``date`` (datetime64), ``number_of_cds`` (int), ``dollar_value`` (float).
    """
    return pd.read_csv(cdnow_path(), dtype={"customer_id": str}, parse_dates=["date"])
