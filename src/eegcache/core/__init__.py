"""The code that shapes a cache version's bytes, and nothing else.

``corpus`` finds recordings and parses their annotations (the TUSZ layout is documented beside its parser),
``edf`` reads a recording, ``montage`` names its channels, ``signal`` holds the pure preprocessing steps,
``store`` the cache file format and its atomic deterministic writer, ``process`` turns one recording into one
cache file and composes the metadata, ``identity`` the digests everything is keyed by.

Every ``*.py`` file here is part of the build's code digest and of the DVC stage ``build_cache``'s deps: a
change to any of them is a new cache version. Modules here import only numpy, scipy, edfio, the standard
library, each other and ``eegcache.errors``; they take plain values (paths, arrays, the stage params dict).
"""
