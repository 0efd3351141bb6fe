"""Synthesis: morph a seed (:mod:`.morphing`), find it a place (:mod:`.placement`), blend it in
(:mod:`.blending`, :mod:`.insertion`) with the host's texture (:mod:`.texture`), and make a whole
case (:mod:`.case`)."""
