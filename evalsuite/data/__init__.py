"""Corpora and windows: load evaluation text (local files pinned by sha256, or the hub), tokenize it
(cached), and plan the sliding windows every runner scores. Modules: `corpora`, `windows`."""
