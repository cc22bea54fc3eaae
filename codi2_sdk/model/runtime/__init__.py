"""Serving helpers below the model: one step of several generations run together (:mod:`.batching`) and the
caches that let a request reuse earlier work (:mod:`.prefix_cache`). They import nothing of the model."""
