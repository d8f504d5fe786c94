"""A cache's metadata as a short table for people: per split, files, patients, hours, seizure hours and size."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def literal_console(stderr: bool = False) -> Console:
    """The one way eegcache prints for people: names (files, folders, keys, versions) come from outside, so nothing
    is read as rich markup (``rec[bold]_s001_t000.edf`` stays that), emoji code or highlighting."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False)


_console = literal_console(stderr=True)


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
    out = literal_console()
    out.print(table)
    for line in lines:
        out.print(line)
