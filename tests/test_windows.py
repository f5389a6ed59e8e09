"""The time protocol (DESIGN §3): cutoffs, horizons, training windows and refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re

import pandas as pd
import pytest

import custseq
from custseq.config import WindowConfig, parse_horizon
from custseq.errors import ConfigError, WindowError
from custseq.windows import (
    DAY,
    Window,
    check_as_of,
    cutoff_of,
    day_after,
    longest_trainable_horizon,
    plan_windows,
)

# Two years of data; the last transaction is in the afternoon of 2023-12-31.
START = dt.datetime(2022, 1, 1, 8, 15)
END = dt.datetime(2023, 12, 31, 17, 30)


def test_as_of_is_inclusive_cutoff_is_midnight_after():
    assert cutoff_of(dt.date(1997, 9, 30)) == dt.datetime(1997, 10, 1)
    w = Window(cutoff_of(dt.date(1997, 9, 30)), 90)
    assert w.as_of == dt.date(1997, 9, 30)
    assert w.key == "1997-09-30"
    assert w.end == dt.datetime(1997, 12, 30)  # [1997-10-01, 1997-12-30): 90 days
    assert day_after(dt.datetime(1998, 6, 30, 23, 59, 59)) == dt.datetime(1998, 7, 1)
    assert day_after(dt.datetime(1998, 6, 30)) == dt.datetime(1998, 7, 1)


@pytest.mark.parametrize(
    ("text", "days"),
    [("90d", 90), ("13w", 91), ("6m", 183), ("1y", 365), (" 30D ", 30), ("45", 45), (180, 180), ("2w", 14)],
)
def test_horizon_units(text, days):
    assert parse_horizon(text) == days


@pytest.mark.parametrize(("text", "match"), [("soon", "not understood"), ("0d", "at least one day"), (0, "at least")])
def test_bad_horizon_is_refused_with_example(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_horizon(text)


def test_training_cutoffs_step_back_by_horizon():
    plan = plan_windows(START, END, WindowConfig(as_of=dt.date(2023, 9, 30), horizon_days=90))
    assert plan.scoring == Window(dt.datetime(2023, 10, 1), 90)
    # t0 − H, t0 − 2H, … while the cutoff is later than data start + 30 days of history (2022-01-31).
    assert [w.cutoff for w in plan.training] == [
        dt.datetime(2023, 7, 3),
        dt.datetime(2023, 4, 4),
        dt.datetime(2023, 1, 4),
        dt.datetime(2022, 10, 6),
        dt.datetime(2022, 7, 8),
        dt.datetime(2022, 4, 9),
    ]
    assert all(w.horizon_days == 90 for w in plan.training)
    assert plan.validation == plan.training[0]
    assert plan.vocab_cutoff == dt.datetime(2023, 7, 3)
    # The latest training window's labels end exactly where the scoring window starts.
    assert plan.training[0].end == plan.scoring.cutoff
    assert plan.scoring_labels_observed  # 2023-12-30 <= 2024-01-01: a back-test is possible


def test_stride_and_max_train_windows():
    cfg = WindowConfig(as_of=dt.date(2023, 9, 30), horizon_days=90, stride_days=30, max_train_windows=4)
    plan = plan_windows(START, END, cfg)
    first = dt.datetime(2023, 10, 1) - 90 * DAY
    assert [w.cutoff for w in plan.training] == [first - k * 30 * DAY for k in range(4)]


def test_default_as_of_is_last_day_of_data():
    plan = plan_windows(START, END, WindowConfig(horizon_days=30))
    assert plan.scoring.as_of == dt.date(2023, 12, 31)
    assert plan.scoring.cutoff == dt.datetime(2024, 1, 1)
    assert plan.training[0].end == dt.datetime(2024, 1, 1)  # = day after the data end: fully observed
    assert not plan.scoring_labels_observed  # labels of the scoring window lie in the future


def test_min_history_limits_the_earliest_cutoff():
    cfg = WindowConfig(as_of=dt.date(2022, 12, 31), horizon_days=100, min_history_days=120)
    plan = plan_windows(START, END, cfg)
    # 2023-01-01 − 100 d = 2022-09-23, then 2022-06-15; 2022-03-07 is not after 2022-01-01 + 120 d = 2022-05-01.
    assert [w.cutoff for w in plan.training] == [dt.datetime(2022, 9, 23), dt.datetime(2022, 6, 15)]


def test_as_of_after_the_data_is_accepted_and_training_ends_by_the_last_row():
    # The shop was quiet for 3 weeks: as-of 2024-01-22 is the user's word; the last row is on 2023-12-31.
    cfg = WindowConfig(as_of=dt.date(2024, 1, 22), horizon_days=30, max_train_windows=3)
    plan = plan_windows(START, END, cfg)
    assert plan.scoring == Window(dt.datetime(2024, 1, 23), 30)
    # The latest c with c + 30 d <= 2024-01-01 (the day after the last row), then every 30 days before it.
    assert [w.cutoff for w in plan.training] == [
        dt.datetime(2023, 12, 2),
        dt.datetime(2023, 11, 2),
        dt.datetime(2023, 10, 3),
    ]
    assert plan.training[0].end == day_after(END) == dt.datetime(2024, 1, 1)  # observed to the last day, not past
    assert not plan.scoring_labels_observed
    assert plan.notes == (
        "last row 2023-12-31, 22 days before as-of: training labels end there",
        "history allows more than 3 training windows; the latest 3 are used (window.max_train_windows)",
    )
    assert plan.vocab_cutoff == dt.datetime(2023, 12, 2)


def test_only_an_as_of_after_the_last_row_gets_a_note():
    assert plan_windows(START, END, WindowConfig(as_of=dt.date(2023, 12, 31))).notes == ()
    assert plan_windows(START, END, WindowConfig()).notes == ()
    one_day = plan_windows(START, END, WindowConfig(as_of=dt.date(2024, 1, 1), horizon_days=30))
    assert one_day.notes == ("last row 2023-12-31, 1 day before as-of: training labels end there",)
    assert one_day.training[0].cutoff == dt.datetime(2023, 12, 2)  # as with as-of 2023-12-31


def test_an_as_of_more_than_ten_years_after_the_last_row_is_taken_for_a_typo():
    assert len(check_as_of(dt.date(2033, 12, 31), START, END)) == 1  # exactly 10 years: accepted
    with pytest.raises(
        WindowError,
        match=r"as-of 2034-01-01 is more than 10 years after the last row \(2023-12-31\).*at most 10 years after "
        r"the last row \(2033-12-31 here\); check --as-of",
    ):
        plan_windows(START, END, WindowConfig(as_of=dt.date(2034, 1, 1)))
    leap = dt.datetime(2024, 2, 29, 12)
    assert check_as_of(dt.date(2034, 2, 28), START, leap)
    with pytest.raises(WindowError, match=r"\(2034-02-28 here\)"):
        check_as_of(dt.date(2034, 3, 1), START, leap)


def test_as_of_before_the_data_is_refused():
    with pytest.raises(WindowError, match=r"before the first transaction \(2022-01-01\); choose a date in 2022-01-01"):
        plan_windows(START, END, WindowConfig(as_of=dt.date(2021, 12, 31)))


def test_horizon_longer_than_history_is_refused_naming_the_longest_that_fits():
    # Cutoff 2023-02-01 − h must be later than 2022-01-01 + 30 d = 2022-01-31: h <= 365.
    with pytest.raises(
        WindowError,
        match=r"horizon 400 days is too long.*\(the longest horizon that fits is 365 days\); "
        r"choose a shorter --horizon or a later --as-of$",
    ):
        plan_windows(START, END, WindowConfig(as_of=dt.date(2023, 1, 31), horizon_days=400))
    with pytest.raises(
        WindowError, match=r"\(not even a 7-day one fits\); choose a shorter --horizon or a later --as-of$"
    ):
        plan_windows(START, END, WindowConfig(as_of=dt.date(2022, 2, 5), horizon_days=30))


def test_a_plan_without_training_windows_when_they_are_not_required():
    cfg = WindowConfig(as_of=dt.date(2023, 1, 31), horizon_days=400, require_training=False)
    plan = plan_windows(START, END, cfg)
    assert plan.training == () and plan.vocab_cutoff == plan.scoring.cutoff
    assert plan.scoring.as_of == dt.date(2023, 1, 31)


def test_just_enough_history_gives_one_window():
    # Cutoff t0 − H must be strictly later than data start + min history.
    as_of = dt.date(2022, 1, 1) + dt.timedelta(days=30 + 90)  # t0 − H = 2022-02-01 > 2022-01-31
    assert len(plan_windows(START, END, WindowConfig(as_of=as_of, horizon_days=90)).training) == 1
    with pytest.raises(WindowError, match="too long"):
        plan_windows(START, END, WindowConfig(as_of=as_of - dt.timedelta(days=1), horizon_days=90))


@pytest.mark.parametrize(
    ("as_of", "horizon", "stride", "max_windows", "min_history"),
    list(
        itertools.product(
            [
                dt.date(2024, 3, 15),
                dt.date(2024, 1, 1),
                dt.date(2023, 12, 31),
                dt.date(2023, 6, 15),
                dt.date(2022, 11, 2),
            ],
            [7, 30, 91, 180],
            [None, 14, 45],
            [None, 3],
            [0, 30],
        )
    ),
)
def test_training_windows_are_fully_observed(as_of, horizon, stride, max_windows, min_history):
    cfg = WindowConfig(
        as_of=as_of,
        horizon_days=horizon,
        stride_days=stride,
        max_train_windows=max_windows,
        min_history_days=min_history,
    )
    plan = plan_windows(START, END, cfg)
    step = (stride or horizon) * DAY
    earliest = dt.datetime(2022, 1, 1) + min_history * DAY
    assert plan.scoring.cutoff == dt.datetime.combine(as_of, dt.time()) + DAY
    # The latest cutoff whose labels end by both the scoring cutoff and the day after the last row (2024-01-01).
    assert plan.training[0].cutoff == min(plan.scoring.cutoff, dt.datetime(2024, 1, 1)) - horizon * DAY
    assert plan.scoring_labels_observed == (plan.scoring.end <= dt.datetime(2024, 1, 1))
    for w in plan.training:
        assert w.end <= day_after(END)  # labels never censored
        assert w.end <= plan.scoring.cutoff  # and known at scoring time
        assert w.cutoff > earliest
        assert w.horizon_days == horizon
    assert all(a.cutoff - b.cutoff == step for a, b in itertools.pairwise(plan.training))
    # As many windows as history allows, up to the maximum.
    room = plan.training[-1].cutoff - step <= earliest
    assert room or len(plan.training) == max_windows
    assert max_windows is None or len(plan.training) <= max_windows


@pytest.mark.parametrize(
    "kwargs", [{"horizon_days": 0}, {"stride_days": 0}, {"max_train_windows": 0}, {"min_history_days": -1}]
)
def test_window_config_rejects_impossible_values(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        WindowConfig(**kwargs)


def test_prepare_accepts_as_of_after_data_with_a_note(tmp_path):
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b"],
            "ts": pd.to_datetime(["2023-01-05", "2023-06-01", "2023-05-20", "2023-06-30"]),
            "amount": [10.0, 20.0, 5.0, 7.0],
        }
    )
    result = custseq.prepare(tx, out=tmp_path, as_of="2023-07-20", horizon="30d")
    summary = result.summary
    assert summary.notes == ("last row 2023-06-30, 20 days before as-of: training labels end there",)
    assert [(w.role, w.cutoff, w.label_end, w.labels) for w in summary.windows[:2]] == [
        ("score", "2023-07-21T00:00:00", "2023-08-20T00:00:00", False),
        ("validation", "2023-06-01T00:00:00", "2023-07-01T00:00:00", True),  # ends the day after the last row
    ]
    assert all(w.label_end <= "2023-07-01T00:00:00" for w in summary.windows if w.labels)
    # The validation window's labels see b's purchase of 2023-06-30, its last day: the label period is whole.
    labels = result.labels(result.plan.validation).to_pandas().set_index("customer_id")
    assert labels["value"].to_dict() == {"a": 20.0, "b": 7.0} and not labels["churned"].any()
    assert custseq.io.run_files.RunFolder(tmp_path).read_prepare_summary().notes == summary.notes
    with pytest.raises(WindowError, match=r"more than 10 years after the last row \(2023-06-30\)"):
        custseq.prepare(tx, out=tmp_path, as_of="2033-07-01", horizon="30d")
    with pytest.raises(WindowError, match="too long"):
        custseq.prepare(tx, out=tmp_path, as_of="2023-06-30", horizon="1y")


# --- the longest horizon that fits ------------------------------------------------------------------------------


def test_longest_trainable_horizon_exact_values():
    short = WindowConfig(as_of=dt.date(2022, 3, 1), horizon_days=90)  # cutoff 2022-03-02; earliest 2022-01-31
    assert longest_trainable_horizon(START, END, short) == 29
    assert longest_trainable_horizon(START, END, dataclasses.replace(short, horizon_days=20)) == 20  # it fits
    assert longest_trainable_horizon(START, END, dataclasses.replace(short, min_history_days=0)) == 59
    # After the last row, the labels end by 2024-01-01: 700 days of room after 2022-01-31.
    late = WindowConfig(as_of=dt.date(2024, 6, 30), horizon_days=800)
    assert longest_trainable_horizon(START, END, late) == 699
    tight = WindowConfig(as_of=dt.date(2022, 2, 5), horizon_days=30)  # 6 days of room: h <= 5
    assert longest_trainable_horizon(START, END, tight) is None
    assert longest_trainable_horizon(START, END, tight, minimum_days=5) == 5
    assert longest_trainable_horizon(START, END, dataclasses.replace(tight, horizon_days=3)) == 3  # requested fits
    with pytest.raises(WindowError, match="before the first transaction"):
        longest_trainable_horizon(START, END, WindowConfig(as_of=dt.date(2021, 1, 1)))


SPANS = [
    (dt.datetime(2022, 1, 1, 8, 15), dt.datetime(2023, 12, 31, 17, 30)),
    (dt.datetime(2023, 3, 10, 23, 59), dt.datetime(2023, 6, 1, 0, 0)),
    (dt.datetime(2023, 5, 1), dt.datetime(2023, 5, 20, 12)),
]


@pytest.mark.parametrize(("span", "as_of_offset", "horizon", "min_history"),
                         list(itertools.product(SPANS, [-40, -10, 0, 3, 60], [7, 30, 90, 400], [0, 30])))  # fmt: skip
def test_longest_trainable_horizon_agrees_with_plan_windows(span, as_of_offset, horizon, min_history):
    start, end = span
    as_of = max(end.date() + dt.timedelta(days=as_of_offset), start.date())
    cfg = WindowConfig(as_of=as_of, horizon_days=horizon, min_history_days=min_history, require_training=False)

    def n_training(h: int) -> int:
        return len(plan_windows(start, end, dataclasses.replace(cfg, horizon_days=h)).training)

    h = longest_trainable_horizon(start, end, cfg)
    if h is None:
        assert n_training(7) == 0
    else:
        assert 7 <= h <= horizon or h == horizon
        assert n_training(h) >= 1
        assert h == horizon or n_training(h + 1) == 0


# --- bounds: one typo cannot make a thousand windows, nor overflow a date -------------------------------------------


def test_training_windows_are_capped_by_default_with_a_note():
    # A 1900 typo that got past validation (min_date lowered): 124 years of 30-day windows, cut at the default cap.
    cfg = WindowConfig(horizon_days=30)
    plan = plan_windows(dt.datetime(1900, 1, 1), END, cfg)
    assert len(plan.training) == cfg.max_train_windows == 100
    assert plan.training[0].cutoff == dt.datetime(2023, 12, 2)  # the latest ones are kept
    assert plan.notes == (
        "history allows more than 100 training windows; the latest 100 are used (window.max_train_windows)",
    )
    # No note when the cap does not bind; None lifts it.
    assert plan_windows(START, END, cfg).notes == ()
    uncapped = dataclasses.replace(cfg, max_train_windows=None)
    assert len(plan_windows(dt.datetime(1990, 1, 1), END, uncapped).training) > 400


@pytest.mark.parametrize(
    "as_of, horizon, message",
    [
        ("9999-12-31", None, "as_of 9999-12-31 is not a plausible date; it must be on or before 2999-12-31"),
        (None, "100000y", "horizon_days must be 1 to 36525 (100 years), got 36500000"),
        (None, 10**9, "horizon_days must be 1 to 36525"),
    ],
)
def test_an_implausible_as_of_or_horizon_is_a_config_error_not_an_overflow(as_of, horizon, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        custseq.config.with_window(custseq.config.RunConfig(), as_of=as_of, horizon=horizon)


@pytest.mark.parametrize("field", ["stride_days", "min_history_days"])
def test_a_span_of_more_than_a_century_is_refused(field):
    with pytest.raises(ConfigError, match=f"{field} must be"):
        WindowConfig(**{field: 36_526})
    WindowConfig(**{field: 36_525})  # a century is allowed
