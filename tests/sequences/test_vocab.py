"""Vocabularies: reserved ids, frequency order, rare and unseen values, JSON round-trip and refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pandas as pd
import pytest

from custseq.config import SequenceConfig
from custseq.errors import ArtifactError
from custseq.io.engine import connect
from custseq.sequences.build import read_sequences, write_sequences
from custseq.sequences.tokens import layout_for
from custseq.sequences.vocab import MASK, PAD, UNKNOWN, SequenceVocab, encode_tables, fit_vocab
from custseq.validate.tables import validate_tables
from custseq.windows import Window

BEFORE = dt.datetime(2024, 2, 1)
CFG = SequenceConfig(min_count=2)

# Before BEFORE: x ×5, y ×4, z ×4 (tie with y: alphabetical), w ×1 (rare), two rows without a product.
# After BEFORE: "new" ×6 (frequent, but only after the vocabulary cutoff) and one more x.
PRODUCTS_BEFORE = ["x"] * 5 + ["y"] * 4 + ["z"] * 4 + ["w"] + [None, None]
PRODUCTS_AFTER = ["new"] * 6 + ["x"]


def frame() -> pd.DataFrame:
    products = PRODUCTS_BEFORE + PRODUCTS_AFTER
    n_before = len(PRODUCTS_BEFORE)
    ts = [pd.Timestamp("2024-01-01 08:00") + pd.Timedelta(hours=5 * i) for i in range(n_before)]
    ts += [pd.Timestamp("2024-02-10 08:00") + pd.Timedelta(hours=5 * i) for i in range(len(PRODUCTS_AFTER))]
    return pd.DataFrame(
        {
            "customer_id": [f"c{i % 4}" for i in range(len(products))],
            "ts": ts,
            "amount": [float(10 + i) for i in range(len(products))],
            "product": products,
            "channel": ["web", "app"] * (len(products) // 2) + ["web"] * (len(products) % 2),
        }
    )


EVENTS = pd.DataFrame(
    {
        "customer_id": ["c0", "c1", "c2", "c3", "c0"],
        "ts": pd.to_datetime(
            ["2024-01-02", "2024-01-03", "2024-01-04 10:00", "2024-01-05", "2024-02-15"], format="ISO8601"
        ),
        "event": ["login", "login", "view", "login", "view"],
    }
)


@pytest.fixture
def fitted():
    con = connect()
    tables = validate_tables(con, frame(), events=EVENTS).tables
    tx, ev = tables["transactions"], tables["events"]
    vocab = fit_vocab(con, layout_for(tx, ev, "line"), tx, ev, BEFORE, CFG)
    return con, tx, ev, vocab


def test_reserved_ids():
    assert (PAD, MASK, UNKNOWN) == (0, 1, 2)


def test_values_by_falling_frequency_from_training_rows(fitted):
    *_, vocab = fitted
    assert vocab.values["product"] == ("x", "y", "z")  # w is rare, "new" comes after BEFORE
    assert vocab.size("product") == 6
    assert vocab.values["channel"] == ("app", "web")  # 8 each before BEFORE: ties in value order
    assert vocab.values["event"] == ("login",)  # view: one before BEFORE (min_count 2)
    assert vocab.fitted_before == BEFORE.isoformat()
    assert vocab.reserved == {"pad": 0, "mask": 1, "unknown": 2}


def test_encoded_ids(fitted):
    con, tx, ev, vocab = fitted
    encoded = con.execute("SELECT product FROM enc_transactions ORDER BY row_id").fetchall()
    expected = {"x": 3, "y": 4, "z": 5, "w": UNKNOWN, "new": UNKNOWN, None: PAD}
    assert [r[0] for r in encoded] == [expected[p] for p in PRODUCTS_BEFORE + PRODUCTS_AFTER]
    unknown = encode_tables(con, vocab, tx, ev)
    assert unknown == {"product": 1 + 6, "channel": 0, "event": 2}  # w + new; both views


def test_max_vocab_keeps_the_most_frequent():
    con = connect()
    tx = validate_tables(con, frame()).tables["transactions"]
    vocab = fit_vocab(con, layout_for(tx, None, "line"), tx, None, BEFORE, dataclasses.replace(CFG, max_vocab=2))
    assert vocab.values["product"] == ("x", "y")
    assert con.execute("SELECT count_if(product = 2) FROM enc_transactions").fetchone()[0] == 4 + 1 + 6  # z, w, new


def test_ids_in_sequences(fitted, tmp_path):
    con, _, _, vocab = fitted
    cfg = CFG
    seqs = read_sequences(write_sequences(con, vocab, Window(dt.datetime(2024, 3, 1), 30), cfg, tmp_path, 4))
    ids = {3 + i: v for i, v in enumerate(vocab.values["product"])} | {UNKNOWN: "?", PAD: None}
    got = sorted(ids[i] or "-" for row in seqs.column("product").to_pylist() for i in row)
    # Event tokens carry product 0 (no value), like the two rows without a product.
    want = sorted(p if p in ("x", "y", "z") else ("-" if p is None else "?") for p in PRODUCTS_BEFORE + PRODUCTS_AFTER)
    assert got == sorted(want + ["-"] * len(EVENTS))


def test_json_round_trip(fitted, tmp_path):
    *_, vocab = fitted
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = SequenceVocab.load(path)
    assert loaded == vocab
    assert loaded.stats == vocab.stats and loaded.layout == vocab.layout
    assert SequenceVocab.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab


def test_wrong_format_version_is_refused(fitted, tmp_path):
    *_, vocab = fitted
    data = vocab.to_json() | {"format_version": 2}
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="vocabulary format 2 cannot be read by this custseq"):
        SequenceVocab.load(path)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda text: text[: len(text) // 2], "cannot read vocabulary"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "stats"}), "missing 'stats'"),
        (lambda text: text.replace('"kind"', '"knd"'), "incomplete or corrupted"),
    ],
    ids=["truncated", "missing-key", "bad-field"],
)
def test_corrupted_file_is_refused(fitted, tmp_path, damage, match):
    *_, vocab = fitted
    path = tmp_path / "vocab.json"
    vocab.save(path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(ArtifactError, match=match):
        SequenceVocab.load(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="cannot read vocabulary"):
        SequenceVocab.load(tmp_path / "nope.json")


def test_json_of_the_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text("[]")
    with pytest.raises(ArtifactError):
        SequenceVocab.load(path)
