"""The project's own error types: each names the file (and line, where there is one) and the reason."""

from __future__ import annotations

from pathlib import Path


class EegcacheError(Exception):
    """Base error; the CLI turns it into one clear message and a non-zero exit."""

    def __init__(self, reason: str, path: str | Path | None = None, line: int | None = None):
        self.reason = reason
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return f"{where}{self.reason}"


class ConfigError(EegcacheError):
    """Invalid configuration (unknown key, wrong type, bad value)."""


class AnnotationError(EegcacheError):
    """A malformed .csv_bi/.csv annotation file."""


class CorpusError(EegcacheError):
    """A problem with the corpus layout: bad file names, duplicates, missing annotations, split leaks."""


class RecordingError(EegcacheError):
    """An EDF recording that cannot be turned into a cache file (unreadable, bad rate, missing channels)."""


class CacheError(EegcacheError):
    """A cache file or metadata that is missing, malformed or inconsistent."""


class TrainError(EegcacheError):
    """A cache split that cannot train or evaluate the baseline (no windows, or no seizure or background windows)."""


def cause(exc: BaseException) -> str:
    """The innermost useful message of a chained exception (DVC wraps botocore/s3fs errors)."""
    messages = []
    while exc is not None:
        text = str(exc).strip()
        if text and text not in messages:
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(messages[:3]) or "unknown error"
