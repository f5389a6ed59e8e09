"""Behaviour events are tokens of their own in the sequences, and both self-supervised objectives (masked
events, the held-out next event) cover them: their event type is a target like a product is."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import torch

from custseq.config import SequenceConfig
from custseq.io.engine import connect
from custseq.models.heads import EventPrediction
from custseq.models.losses import event_loss
from custseq.schema import TOKEN_TYPES
from custseq.sequences.batch import collate
from custseq.sequences.build import read_sequences, write_sequences
from custseq.sequences.masking import sample_mask, split_last, targets_at
from custseq.sequences.tokens import layout_for
from custseq.sequences.vocab import FIRST_VALUE_ID, fit_vocab
from custseq.validate.tables import validate_tables
from custseq.windows import Window

WINDOW = Window(dt.datetime(2024, 3, 1), 30)


def _batch(tmp_path):
    tx = pd.DataFrame(
        [("a", "2024-01-02 10:00", 10.0, "p1"), ("a", "2024-01-20 10:00", 12.0, "p2"),
         ("b", "2024-01-05 00:00", 5.0, "p1")],
        columns=["customer_id", "ts", "amount", "product"],
    ).assign(ts=lambda d: pd.to_datetime(d["ts"]))  # fmt: skip
    events = pd.DataFrame(
        [("a", "2024-01-10 09:00", "login"), ("a", "2024-02-10 09:00", "support"), ("b", "2024-01-06 00:00", "login"),
         ("b", "2024-01-07 00:00", "login")],
        columns=["customer_id", "ts", "event"],
    ).assign(ts=lambda d: pd.to_datetime(d["ts"]))  # fmt: skip
    con = connect()
    t = validate_tables(con, tx, events=events).tables
    cfg = SequenceConfig(min_count=1)
    layout = layout_for(t["transactions"], t["events"], "line")
    vocab = fit_vocab(con, layout, t["transactions"], t["events"], WINDOW.cutoff, cfg)
    table = read_sequences(write_sequences(con, vocab, WINDOW, cfg, tmp_path / "seq", 2))
    return collate(table, vocab, 16), vocab


def test_events_interleave_with_purchases_as_their_own_token_type(tmp_path):
    batch, vocab = _batch(tmp_path)
    a = batch.customer_ids.index("a")
    types = batch.token_type[a, : batch.lengths[a]].tolist()
    event, tx = TOKEN_TYPES["event"], TOKEN_TYPES["transaction"]
    assert types == [tx, event, tx, event]  # by time: p1, login, p2, support
    ids = batch.categorical["event"][a, : batch.lengths[a]].tolist()
    assert ids[0] == 0 and ids[2] == 0  # purchases carry no event type
    assert [vocab.values["event"][i - FIRST_VALUE_ID] for i in (ids[1], ids[3])] == ["login", "support"]


def test_the_next_event_target_can_be_an_event(tmp_path):
    batch, vocab = _batch(tmp_path)
    _, targets, has_next = split_last(batch)
    a = batch.customer_ids.index("a")
    assert bool(has_next[a])
    assert vocab.values["event"][int(targets.categorical["event"][a]) - FIRST_VALUE_ID] == "support"


def test_masked_event_tokens_are_reconstruction_targets(tmp_path):
    batch, _ = _batch(tmp_path)
    chosen = sample_mask(batch.mask, rate=1.0)
    rows, cols = torch.nonzero(chosen, as_tuple=True)
    targets = targets_at(batch, rows, cols)
    is_event = batch.token_type[rows, cols] == TOKEN_TYPES["event"]
    assert is_event.any() and (targets.categorical["event"][is_event] >= FIRST_VALUE_ID).all()
    # the loss scores the event field on those tokens (a perfect guess of it: accuracy 1)
    n = len(rows)
    logits = {name: torch.nn.functional.one_hot(ids, 16).float() * 10 for name, ids in targets.categorical.items()}
    pred = EventPrediction(logits, targets.numeric.clone(), targets.log_dt_prev.clone())
    _, metrics = event_loss(pred, targets)
    assert metrics["acc_event"] == 1.0 and n == int(batch.mask.sum())
