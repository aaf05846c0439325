"""Live progress on a terminal: items done / total, items per second, time left, failures so far.

One protocol for every long command (``run``, ``selfcheck``, ``claims``, ``study``,
``layers``): the work calls ``progress(done, total, name, failed=0)`` with ``done`` the
items finished so far, once with ``done=0`` before it starts and once with ``done=total``
at the end, which closes the display. A library function takes ``progress=None`` and then
shows nothing; only the command line hands it a ``Progress``.

The display is drawn by ``rich.progress`` on stderr, only when stderr is a terminal and the
command is not ``--quiet``; otherwise nothing at all is written (a pipe, a CI log, pytest).
It is transient: it is erased when the work ends, so what stays on the screen is the
command's own output (the summary, or with --quiet its final line), never a stale bar.
``with Progress(...) as progress:`` erases it as well when the work raises (Ctrl-C
included), and gives the cursor back.

rich is imported when a display starts, not when this module is imported: ``import harness``
and every non-terminal run stay without it.
"""

from __future__ import annotations

import sys
from typing import Callable, TextIO


def _rate(done: float, seconds: float | None) -> float | None:
    """Items per second over the whole work so far (not a moving window: the items of one
    command take very different times, and a few slow layers would leave a window empty)."""
    return done / seconds if done and seconds else None


def _per_second(rate: float | None) -> str:
    if rate is None:
        return "?"
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}" if rate >= 0.1 else f"{rate:.2f}"


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{s:02d}"


def _columns(unit: str) -> list:
    """The columns after the bar and done/total: rate, time left, failures so far, the latest
    item's name. Built here so that rich is imported only when a display starts."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{_per_second(_rate(task.completed, task.elapsed))} {unit}/s", style="progress.data.speed")

    class TimeLeft(ProgressColumn):
        def render(self, task) -> Text:
            rate = _rate(task.completed, task.elapsed)
            left = "-:--:--" if rate is None or task.total is None else _clock((task.total - task.completed) / rate)
            return Text(f"{left} left", style="progress.remaining")

    class Failed(ProgressColumn):
        def render(self, task) -> Text:
            n = task.fields.get("failed", 0)
            return Text(f"{n} failed", style="bold red" if n else "dim")

    class Latest(ProgressColumn):
        def render(self, task) -> Text:
            return Text(str(task.fields.get("name", ""))[:40], style="dim", no_wrap=True, overflow="ellipsis")

    return [Rate(), TimeLeft(), Failed(), Latest()]


class Progress:
    """``progress(done, total, name, failed=0)``: a transient rich progress line on stderr,
    shown only on a terminal and when not ``quiet``.

    ``label`` names the work ("selfcheck"), ``unit`` its items ("runs": "2.5 runs/s").
    ``ticking=False`` redraws only when called, not also four times a second in a thread of
    its own (for work that times itself: the cost study). ``console`` (a
    ``rich.console.Console``) replaces stderr, for tests: the display is then shown when
    ``console.is_terminal``. ``get_time`` replaces the clock, for tests too.
    """

    def __init__(self, label: str = "run", unit: str = "cases", *, quiet: bool = False, ticking: bool = True,
                 stream: TextIO | None = None, console=None, get_time: Callable[[], float] | None = None) -> None:
        self.label, self.unit, self.ticking = label, unit, ticking
        self.console = console
        self.stream = stream if stream is not None else sys.stderr  # looked up now: pytest swaps it
        self.get_time = get_time
        if console is not None:
            self.enabled = not quiet and console.is_terminal
        else:
            self.enabled = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = None  # the rich Progress while a display is live
        self._task = None

    def __call__(self, done: int, total: int, name: str = "", failed: int = 0) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            if done >= total:
                return  # nothing left to show: no display flashed on and off
            self._start(total)
        self._bar.update(self._task, completed=done, total=total, name=name, failed=failed)
        if done >= total:
            self.close()
        else:
            self._bar.refresh()  # now, not at the next tick: the first line, and each item

    def _start(self, total: int) -> None:
        from rich.console import Console
        from rich.constrain import Constrain
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn

        class Narrow(RichProgress):
            """Three columns short of the terminal: after a full-width line, the ``^C`` a
            terminal echoes on Ctrl-C wraps onto a new line, and the display would then erase
            that line instead of its own and leave itself on the screen."""

            def get_renderables(self):
                yield Constrain(self.make_tasks_table(self.tasks), width=max(console.width - 3, 20))

        console = self.console or Console(file=self.stream)
        # stdout goes through the display (above the bar) only when it shares the terminal:
        # redirected to a file, what a command prints must land in the file, not on stderr
        shared = console.file is sys.stderr and hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
        self._bar = Narrow(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *_columns(self.unit),
                           console=console, transient=True, redirect_stdout=shared,
                           redirect_stderr=console.file is sys.stderr, auto_refresh=self.ticking,
                           refresh_per_second=4, **({"get_time": self.get_time} if self.get_time else {}))
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=total, name="", failed=0)

    @property
    def live(self) -> bool:
        """A display is on the screen now."""
        return self._bar is not None

    def close(self) -> None:
        """Erase the display and give the terminal back (idempotent)."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.stop()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Progress"]
