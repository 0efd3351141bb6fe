"""Running it: the offline pipeline (:mod:`.offline`), on-the-fly transforms (:mod:`.transforms`), the demo (:mod:`.demo`)."""
