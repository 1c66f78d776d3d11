"""Configuration: recipe YAMLs that extend shared blocks (recipe_yaml.py), the strict option
check (options.py), the one-run-per-folder lock (run_lock.py) and the set-up every entry
script shares (entry.py)."""
