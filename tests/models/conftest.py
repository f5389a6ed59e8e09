"""Planted data shared by the encoder tests."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

import custseq
from custseq.config import RunConfig, SequenceConfig

CYCLE = ["A", "B", "C", "D"]
CYCLIC_AS_OF = "2023-03-25"


@pytest.fixture(scope="module")
def cyclic_prepared(tmp_path_factory) -> tuple[custseq.PrepareResult, pd.DataFrame]:
    """300 customers whose products cycle A→B→C→D→A… from a random start; spend grows with the product.

    Prepared as of 2023-03-25 with a 30-day horizon; returns the prepare result and the rows.
    """
    rng = np.random.default_rng(7)
    rows = []
    for c in range(300):
        start, day = int(rng.integers(4)), int(rng.integers(0, 20))
        for k in range(int(rng.integers(6, 13))):
            product = CYCLE[(start + k) % 4]
            rows.append(
                {"customer_id": f"c{c:03d}", "ts": dt.datetime(2023, 1, 1) + dt.timedelta(days=day),
                 "amount": 10.0 * (1 + CYCLE.index(product)), "product": product}
            )  # fmt: skip
            day += int(rng.integers(3, 9))
    frame = pd.DataFrame(rows)
    result = custseq.prepare(
        frame, out=tmp_path_factory.mktemp("cyclic"), as_of=CYCLIC_AS_OF, horizon="30d",
        config=RunConfig(sequence=SequenceConfig(min_count=1)),
    )  # fmt: skip
    return result, frame
