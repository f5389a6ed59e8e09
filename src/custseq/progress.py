"""How a long run shows where it stands: each stage with its duration, and bars with the time left.

One :class:`RunProgress` serves a whole run (``predict``, ``pretrain``, ``prepare``, ``evaluate``): the pipeline
calls :meth:`RunProgress.stage` as each stage starts, and the training loop and ``evaluate`` drive
:meth:`RunProgress.bar` on it. Where stderr can redraw in place (a terminal, or a notebook with ipywidgets) it
is one Rich live display: the running stage with a spinner, the bars with their time left, and a line
"✓ stage  12.3 s" left behind as each stage ends. Anywhere else (a script piped to a file, CI) it prints plain
lines: each stage as it starts and as it ends, each bar's milestones (an epoch done) and, every half minute,
where a bar stands. Turned off, it prints nothing but still tells its ``on_stage`` listener.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn
from rich.table import Column
from rich.text import Text

Stage = Callable[[str], None]
Clock = Callable[[], float]
PLAIN_EVERY_S = 30.0  # off a terminal, how often a bar says where it stands between milestones


class Note(str):
    """A progress message that is a note to keep on screen (e.g. about the as-of date), not a stage starting."""

    __slots__ = ()


def duration_text(seconds: float) -> str:
    """``0.4 s``, ``12.3 s``, ``4 min 05 s``, ``1 h 02 min``."""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def remaining(done: float, left: float, elapsed: float) -> float | None:
    """Seconds for the ``left`` steps at the average rate of the ``done`` ones; None before the first is done."""
    if done <= 0:
        return None
    return elapsed / done * left


def time_left_text(done: float, left: float, elapsed: float, *, bound: bool = False) -> str | None:
    """``about 5 min 40 s left``; ``up to …`` when the run may end sooner (early stopping); None before any step
    or after the last."""
    seconds = remaining(done, left, elapsed)
    if seconds is None or left <= 0:
        return None
    return f"{'up to' if bound else 'about'} {duration_text(seconds)} left"


def animates(console: Console) -> bool:
    """Whether ``console`` can redraw a display in place: a terminal that is not dumb, or a notebook that has
    ipywidgets (without it Rich cannot redraw there)."""
    if console.is_jupyter:
        return importlib.util.find_spec("ipywidgets") is not None
    return console.is_terminal and not console.is_dumb_terminal


class RunProgress:
    """The progress display of one run, on stderr; a context manager that starts and ends the display.

    Parameters
    ----------
    enabled : bool
        Show anything at all; when False only ``on_stage`` hears the stages.
    on_stage : callable, optional
        Called with every stage message (a :class:`Note` included), shown or not.
    console : rich.console.Console, optional
        Where to show it; default a console on stderr.
    notes : bool
        Print :class:`Note` messages (False where the caller prints them in its own summary).
    clock : callable
        Seconds from an arbitrary origin (``time.monotonic``); tests pass their own.
    animate : bool, optional
        Force the live display on or off; default: whether the console can redraw in place (:func:`animates`).
    plain_every_s : float
        Off a terminal, how often a bar prints where it stands between its milestones.
    """

    def __init__(
        self,
        enabled: bool = True,
        *,
        on_stage: Stage | None = None,
        console: Console | None = None,
        notes: bool = True,
        clock: Clock = time.monotonic,
        animate: bool | None = None,
        plain_every_s: float = PLAIN_EVERY_S,
    ) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.animated = enabled and (animates(self.console) if animate is None else animate)
        self.clock = clock
        self.plain_every_s = plain_every_s
        self._notes = notes
        self._on_stage = on_stage
        self._stage: tuple[str, float] | None = None  # the running stage and when it started
        description = Column(ratio=1, no_wrap=True, overflow="ellipsis")  # the ✓ line has it whole
        self._stages = Progress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False, table_column=description), _Elapsed(),
            console=self.console, get_time=clock, expand=True,
        )  # fmt: skip
        self._bars = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(bar_width=None),
            TextColumn("{task.fields[info]}", markup=False), _TimeLeft(),
            console=self.console, get_time=clock, expand=True,
        )  # fmt: skip
        self._live = Live(get_renderable=self.__rich__, console=self.console, transient=True, refresh_per_second=4)

    def __enter__(self) -> RunProgress:
        if self.animated:
            self._live.start(refresh=True)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self._end_stage()
        if self.animated:
            self._live.stop()

    def stage(self, message: str) -> None:
        """A stage starts (and the one before it ends, with its duration); a :class:`Note` is printed as a note."""
        if self._on_stage is not None:
            self._on_stage(message)
        if not self.enabled:
            return
        if isinstance(message, Note):
            if self._notes:
                self.print(f"  [dim]note:[/] {escape(message)}")
            return
        self._end_stage()
        self._stage = (message, self.clock())
        if self.animated:
            self._stages.add_task(message, total=None)
        else:
            self.print(f"{escape(message)}…")

    def bar(
        self,
        label: str,
        total: int,
        *,
        completed: int = 0,
        unit: str = "steps",
        info: str = "",
        bound: bool = False,
        every_s: float | None = None,
        plain_label: str | None = None,
    ) -> Bar:
        """A bar of ``total`` steps (``completed`` done already, e.g. before a resume) below the stages.

        ``bound``: its time left is an upper bound (early stopping may end the run sooner). ``every_s``: off a
        terminal, print where it stands that often (default :attr:`plain_every_s`; 0 never, milestones only).
        ``plain_label`` names it in those lines (default ``label``, which names it in a live display).
        """
        every_s = self.plain_every_s if every_s is None else every_s
        return Bar(self, label, plain_label or label, total, completed, unit, info, bound, every_s)

    def print(self, text: str) -> None:
        """A line that stays (Rich markup): above the live display, or as a plain line."""
        if self.enabled:
            self.console.print(text, highlight=False, soft_wrap=not self.animated)

    def _end_stage(self) -> None:
        if self._stage is None:
            return
        message, started = self._stage
        self._stage = None
        for task in self._stages.task_ids:
            self._stages.remove_task(task)
        self.print(f"[green]✓[/] {escape(message)}  [dim]{duration_text(self.clock() - started)}[/]")

    def __rich__(self) -> RenderableType:
        """What the live display draws: the running stage, then the bars."""
        return Group(*(p for p in (self._stages, self._bars) if p.task_ids))


class Bar:
    """A bar of :class:`RunProgress`: steps done of ``total``, and the time left at its average rate so far.

    Made by :meth:`RunProgress.bar`; :meth:`close` it when its work ends.
    """

    def __init__(
        self,
        shown: RunProgress,
        label: str,
        plain_label: str,
        total: int,
        completed: int,
        unit: str,
        info: str,
        bound: bool,
        every_s: float,
    ) -> None:
        self.label, self.total, self.completed, self.unit, self.bound = plain_label, total, completed, unit, bound
        self._shown = shown
        self._first = completed  # done before this bar started: not part of its rate
        self._started = self._last_line = shown.clock()
        self._every_s = every_s
        self._task: TaskID | None = None
        if shown.animated:
            self._task = shown._bars.add_task(
                label, total=total, completed=completed, info=info, first=completed, bound=bound
            )

    @property
    def animated(self) -> bool:
        """Whether the bar is drawn live (else it speaks in plain lines, or not at all)."""
        return self._task is not None

    def advance(self, steps: int = 1, *, info: str | None = None) -> None:
        """``steps`` more done; ``info`` replaces the text beside the bar (loss, throughput)."""
        self.completed += steps
        if self._task is not None:
            if info is None:
                self._shown._bars.update(self._task, advance=steps)
            else:
                self._shown._bars.update(self._task, advance=steps, info=info)
        elif self._shown.enabled and self._every_s > 0 and self._shown.clock() - self._last_line >= self._every_s:
            self._say(f"{self.completed:,}/{self.total:,} {self.unit}")

    def milestone(self, text: str, *, estimate: bool = True) -> None:
        """Off a terminal, a line saying what was just done and (with ``estimate``) the time left; in a live
        display, nothing."""
        if self._shown.enabled and not self._shown.animated:
            self._say(text, estimate)

    def time_left(self) -> str | None:
        """``about 5 min 40 s left`` at the average rate since the bar started; None before its first step."""
        done, left = self.completed - self._first, self.total - self.completed
        return time_left_text(done, left, self._shown.clock() - self._started, bound=self.bound)

    def close(self) -> None:
        """Take the bar off the live display."""
        if self._task is not None:
            self._shown._bars.remove_task(self._task)
            self._task = None

    def _say(self, text: str, estimate: bool = True) -> None:
        left = self.time_left() if estimate else None
        self._shown.print(escape(f"{self.label}: {text}" + (f"; {left}" if left else "")))
        self._last_line = self._shown.clock()


class _Elapsed(ProgressColumn):
    """How long the stage has run, in the words of :func:`duration_text`."""

    def render(self, task: Task) -> Text:
        return Text(duration_text(task.elapsed or 0.0), style="progress.elapsed")


class _TimeLeft(ProgressColumn):
    """The bar's time left at its average rate since it started, as H:MM:SS (``≤`` when an upper bound).

    Rich's own ``TimeRemainingColumn`` looks at the last 30 seconds only, which hold no step at all when steps
    take minutes (an evaluate run, a long epoch).
    """

    def render(self, task: Task) -> Text:
        seconds = remaining(
            task.completed - task.fields["first"], (task.total or 0) - task.completed, task.elapsed or 0
        )
        if seconds is None:
            return Text("-:--:-- left", style="progress.remaining")
        clock = str(dt.timedelta(seconds=round(seconds)))
        return Text(f"{'≤' if task.fields['bound'] else ''}{clock} left", style="progress.remaining")
