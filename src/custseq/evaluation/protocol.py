"""The rows every method of an evaluation trains on, chooses its threshold on, and is tested on.

Both protocols split customers by the same stable id hash that custseq's fine-tuning uses
(:func:`custseq.sequences.batch.split_mask`), so custseq and every baseline see exactly the same rows:

* ``temporal`` (DESIGN §3): prepared as of the test date (one horizon before the scoring date). Training
  rows are the training windows' train customers; validation rows are the validation customers of the
  latest training window; the test rows are every customer of the test window, whose labels lie after
  every training row.
* ``customer-split`` (SeqPreMT): 70% / 15% / 15% of the customers for training, validation and test. The
  test rows are the test customers of the latest labelled window; their rows in every window are kept out
  of training and validation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from custseq.baselines.base import WindowTables
from custseq.config import FinetuneConfig
from custseq.errors import WindowError
from custseq.io.prepared import PreparedWindows, WindowFolder
from custseq.sequences.batch import split_mask

PROTOCOLS = ("temporal", "customer-split")
CUSTOMER_SPLIT: dict[str, Any] = {"validation_fraction": 0.15, "test_fraction": 0.15}  # SeqPreMT's 70 / 15 / 15


def protocol_finetune(protocol: str, ft: FinetuneConfig) -> FinetuneConfig:
    """The fine-tuning settings a protocol needs (the customer split holds out test customers)."""
    return dataclasses.replace(ft, **CUSTOMER_SPLIT) if protocol == "customer-split" else ft


@dataclass(frozen=True)
class Split:
    """Training windows, validation rows and test rows of one prepared dataset under one protocol."""

    protocol: str
    windows: tuple[WindowTables, ...]  # every training window, all customers, latest first
    test_window: WindowTables  # the window the test rows come from, all customers
    test_folder: WindowFolder
    test_part: str  # "all" (temporal) or "test" (customer split): custseq's score_window part
    ft: FinetuneConfig  # the customer split's fractions

    @property
    def horizon_days(self) -> int:
        return self.test_window.horizon_days

    def train(self, label_fraction: float = 1.0) -> list[WindowTables]:
        """The training rows of every window (a ``label_fraction`` share of the train customers)."""
        return [self._part(w, "train", label_fraction) for w in self.windows]

    @property
    def validation(self) -> WindowTables | None:
        """The validation customers of the latest training window (None without training windows)."""
        return self._part(self.windows[0], "validation") if self.windows else None

    @property
    def test(self) -> WindowTables:
        return self.test_window if self.test_part == "all" else self._part(self.test_window, "test")

    def _part(self, window: WindowTables, part: str, label_fraction: float = 1.0) -> WindowTables:
        ids = window.customer_ids
        keep = pa.array(split_mask(ids, part, self.ft.validation_fraction, self.ft.test_fraction, label_fraction))
        labels = window.labels.filter(keep) if window.labels is not None else None
        return dataclasses.replace(window, features=window.features.filter(keep), labels=labels)


def make_split(layout: PreparedWindows, protocol: str, ft: FinetuneConfig) -> Split:
    """The split of a ``prepare`` output (temporal: prepared as of the test date; customer split: as of the end)."""
    h = layout.horizon_days
    windows = tuple(WindowTables.read(folder, h) for folder in layout.training)
    if protocol == "temporal":
        test = WindowTables.read(layout.scoring, h)
        if test.labels is None:  # an as-of after the last row: prepare accepts it, a back-test cannot use it
            raise WindowError(
                f"the temporal back-test tests as of {layout.scoring.key}, one horizon before --as-of, and its "
                f"{h}-day labels would run past the data's last row; choose an --as-of no later than the last "
                "day in the data"
            )
        return Split(protocol, windows, test, layout.scoring, "all", ft)
    if not windows:
        raise WindowError("the customer split needs a labelled training window; choose a shorter --horizon")
    return Split(protocol, windows, windows[0], layout.training[0], "test", ft)
