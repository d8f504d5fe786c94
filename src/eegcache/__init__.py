"""eegcache: versioned, memory-mappable TUSZ EEG caches built as a DVC stage."""

# Here, not read from the installed metadata: the Modal image adds this package as source only (no metadata), and a
# cache's metadata records the version, so a Modal build must write the same bytes as a local `dvc repro`.
__version__ = "0.1.0"
