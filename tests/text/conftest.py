"""A small shop with texts (300 customers over 500 days)."""

from __future__ import annotations

import pandas as pd
import pytest

from custseq.datasets.shop import generate_shop


@pytest.fixture(scope="module")
def shop_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    shop = generate_shop(300, days=500, seed=5)
    return shop.transactions.to_pandas(), shop.events.to_pandas()
