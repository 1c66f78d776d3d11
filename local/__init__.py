"""Corpus preparation scripts (importable from the repository root)."""
