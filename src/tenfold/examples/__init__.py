"""Bundled real models: ``embed`` (all-MiniLM-L6-v2) and ``classify`` (scikit-learn)."""
