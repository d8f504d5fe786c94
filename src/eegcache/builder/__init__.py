"""A build of the cache: plan -> run -> publish (:mod:`.plan`, :mod:`.run`, :mod:`.publish`), the same build split
across processes or containers (:mod:`.shards`), and what a build may do to its out_dir (:mod:`.ownership`)."""
