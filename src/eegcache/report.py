"""What a build shows people: a progress bar (recordings, hours of EEG, ETA) and a closing summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

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


def summary_table(metadata: dict[str, Any], title: str = "cache summary") -> Table:
    """Per-split files, patients, hours, seizure hours and size."""
    table = Table(title=title)
    for column in ("split", "files", "patients", "hours", "seizure h", "MB"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, s in sorted(metadata["splits"].items()):
        table.add_row(
            split,
            str(s["files"]),
            str(s["patients"]),
            f"{s['seconds'] / 3600:.2f}",
            f"{s['seizure_seconds'] / 3600:.2f}",
            f"{s['bytes'] / 1e6:.1f}",
        )
    if metadata["skipped"]:
        table.add_row("skipped", str(len(metadata["skipped"])), "", "", "", "", style="yellow")
    if metadata["excluded"]:
        table.add_row("excluded", str(len(metadata["excluded"])), "", "", "", "", style="dim")
    return table


def print_summary(table: Table, lines: list[str]) -> None:
    out = Console()
    out.print(table)
    for line in lines:
        out.print(line)
