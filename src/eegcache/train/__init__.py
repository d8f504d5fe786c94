"""Training on a cache version: :mod:`.dataset` (windows read at access time), :mod:`.runs` (one route for every
trainer) and :mod:`.baseline` (the numpy baseline, ``train.entrypoint: eegcache.train.baseline:baseline``)."""
