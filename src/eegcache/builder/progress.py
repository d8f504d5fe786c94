"""What a build shows people while it runs: a progress bar (recordings, hours of EEG, ETA)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_console = Console(stderr=True)


class BuildProgress:
    """Progress over recordings, also counting hours of EEG done; silent when disabled or nothing to do."""

    def __init__(self, recordings: int, hours: float, enabled: bool = True):
        self._progress = Progress(
            TextColumn("building cache"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("recordings  {task.fields[hours_done]:.2f}/{task.fields[hours]:.2f} h EEG"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=_console,
            disable=not enabled or recordings == 0,
        )
        self._task = self._progress.add_task("build", total=recordings, hours=hours, hours_done=0.0)
        self._hours_done = 0.0

    def __enter__(self) -> BuildProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, hours: float) -> None:
        self._hours_done += hours
        self._progress.update(self._task, advance=1, hours_done=self._hours_done)
