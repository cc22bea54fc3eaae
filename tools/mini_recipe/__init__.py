"""codi2-mini's training recipe: the stages (:mod:`.recipe` lists them in order) and what they share."""
