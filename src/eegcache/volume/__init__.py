"""Versions on a persistent volume: :mod:`.layout`, :mod:`.install`, :mod:`.quarantine`, :mod:`.prune`, and
:mod:`.resolve`, which puts the version a run needs there from the cheapest source."""
