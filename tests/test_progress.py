"""The run's progress display: durations and time-left words, plain lines off a terminal, the live display's bars."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from custseq.progress import Note, RunProgress, animates, duration_text, remaining, time_left_text


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> Console:
    return Console(file=io.StringIO(), width=80)  # not a terminal


def lines(console: Console) -> list[str]:
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0 s"), (12.34, "12.3 s"), (59.94, "59.9 s"), (59.96, "1 min 00 s"), (245, "4 min 05 s"),
     (3599.6, "1 h 00 min"), (3725, "1 h 02 min")],
)  # fmt: skip
def test_durations_read_in_words(seconds, text):
    assert duration_text(seconds) == text


def test_time_left_is_the_average_rate_so_far_and_says_when_it_is_a_bound():
    assert remaining(done=0, left=8, elapsed=10) is None  # nothing done yet: no rate
    assert remaining(done=2, left=8, elapsed=10) == 40
    assert time_left_text(2, 8, 10) == "about 40.0 s left"
    assert time_left_text(3, 27, 40, bound=True) == "up to 6 min 00 s left"  # early stopping may end it sooner
    assert time_left_text(5, 0, 10) is None  # nothing left to estimate


def test_off_a_terminal_each_stage_is_a_line_as_it_starts_and_as_it_ends():
    console, clock = plain_console(), Clock()
    with RunProgress(console=console, clock=clock) as shown:
        assert not shown.animated
        shown.stage("validating tables")
        clock.now += 2
        shown.stage(Note("last row 2023-12-24"))  # a note stays, and does not end the stage
        shown.stage("custseq[transfer]")  # brackets are text, not Rich markup
        clock.now += 65
    assert lines(console) == [
        "validating tables…",
        "  note: last row 2023-12-24",
        "✓ validating tables  2.0 s",
        "custseq[transfer]…",
        "✓ custseq[transfer]  1 min 05 s",
    ]


def test_a_stage_cut_short_by_an_error_gets_no_tick():
    console = plain_console()
    with pytest.raises(ValueError, match="boom"), RunProgress(console=console, clock=Clock()) as shown:
        shown.stage("fine-tuning")
        raise ValueError("boom")
    assert lines(console) == ["fine-tuning…"]


def test_turned_off_it_prints_nothing_but_its_listener_hears_every_stage():
    console, heard = plain_console(), []
    with RunProgress(False, on_stage=heard.append, console=console) as shown:
        shown.stage("validating tables")
        shown.stage(Note("a note"))
        bar = shown.bar("evaluate", 2, every_s=1)
        bar.advance(2)
        bar.milestone("done")
        bar.close()
    assert heard == ["validating tables", "a note"] and isinstance(heard[1], Note)
    assert lines(console) == []


def test_notes_can_be_left_to_the_caller():
    console = plain_console()
    with RunProgress(console=console, notes=False) as shown:
        shown.stage(Note("printed in the summary instead"))
    assert lines(console) == []


def test_off_a_terminal_a_bar_says_where_it_stands_every_so_often_and_at_its_milestones():
    console, clock = plain_console(), Clock()
    with RunProgress(console=console, clock=clock) as shown:
        bar = shown.bar("evaluate", 4, unit="runs", every_s=30)
        clock.now += 10
        bar.advance()  # 10 s since the bar started: too soon for a line
        clock.now += 30
        bar.advance()  # 40 s: 2 of 4 done, at 20 s each
        bar.milestone("seed 0 done")
        clock.now += 10
        bar.advance()  # 10 s since the last line
        bar.close()
    assert lines(console) == [
        "evaluate: 2/4 runs; about 40.0 s left",
        "evaluate: seed 0 done; about 40.0 s left",
    ]


def test_a_resumed_bar_estimates_from_the_steps_it_did_itself():
    console, clock = plain_console(), Clock()
    with RunProgress(console=console, clock=clock) as shown:
        bar = shown.bar("pre-training", 10, completed=6, bound=True, every_s=0)  # 6 done before a resume
        clock.now += 20
        bar.advance(2)  # 2 steps in 20 s: 2 left take 20 s
        bar.milestone("epoch 8/10")
    assert lines(console) == ["pre-training: epoch 8/10; up to 20.0 s left"]


def test_in_a_terminal_the_bars_show_their_info_and_time_left_within_80_columns():
    terminal = Console(file=io.StringIO(), force_terminal=True, width=80)
    clock = Clock()
    with RunProgress(console=terminal, clock=clock, animate=True) as shown:
        assert shown.animated
        shown.stage("pre-training the sequence encoder (masked + next event)")
        run = shown.bar("pre-training", 30 * 100, unit="batches", info="epoch 3/30", bound=True)
        epoch = shown.bar("  this epoch", 100, unit="batches")
        clock.now += 60
        run.advance(200)
        epoch.advance(50, info="loss 0.5312 · 1,234/s")
        screen = Console(file=io.StringIO(), width=80, record=True)
        screen.print(shown)
        run.close()
        epoch.close()
    drawn = screen.export_text().splitlines()
    assert drawn[0].startswith("⠋ pre-training the sequence encoder") and drawn[0].endswith("1 min 00 s")
    words = [line.replace("━", " ").replace("╸", " ").split() for line in drawn]  # the bars drawn as blanks
    assert words[1] == ["pre-training", "epoch", "3/30", "≤0:14:00", "left"]  # the whole run, an upper bound
    assert words[2] == ["this", "epoch", "loss", "0.5312", "·", "1,234/s", "0:01:00", "left"]
    assert all(len(line) <= 80 for line in drawn)
    left = Text.from_ansi(terminal.file.getvalue()).plain  # type: ignore[attr-defined]
    assert "✓ pre-training the sequence encoder (masked + next event)  1 min 00 s" in left.splitlines()


def test_only_a_terminal_or_a_notebook_redraws_in_place(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    assert not animates(Console(file=io.StringIO()))
    assert animates(Console(file=io.StringIO(), force_terminal=True))
