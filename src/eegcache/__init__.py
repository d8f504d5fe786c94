"""eegcache: versioned, memory-mappable TUSZ EEG caches built as a DVC stage."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("eegcache")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
