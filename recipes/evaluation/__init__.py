"""Evaluation: task metrics and results files (metrics.py), per-group errors (group_errors.py),
age in years (age.py)."""
