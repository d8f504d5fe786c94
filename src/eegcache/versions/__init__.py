"""Cache versions: what a version is (:mod:`.lockfile`, :mod:`.identity`, :mod:`.expected`), its objects
(:mod:`.objects`), where they come from (:mod:`.fetch`), the DVC and git adapter (:mod:`.dvc`) and :mod:`.verify`."""
