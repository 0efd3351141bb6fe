"""Quality checks: realism measures (:mod:`.realism`) and preview images (:mod:`.preview`)."""
